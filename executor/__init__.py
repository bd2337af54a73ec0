"""remote-executor: a self-hosted executor for DataHub metadata ingestion.

It leases SQS queues and temporary AWS credentials from DataHub GMS, runs the
recipes it receives in sandboxed subprocesses, and reports the results back.
"""

__version__ = "0.1.0"
