"""The local control plane: a small GMS stand-in with an embedded moto server for SQS and STS.

It speaks the part of DataHub's API the executor and DataHub's own clients use (GraphQL,
``ingestProposal``, the OpenAPI batch read, ``/config``, ``/health``), dispatches execution
requests to per-pool SQS queues, and leases real temporary credentials that really expire
(an SQS gateway checks them). State lives in SQLite. It is for the demo and the integration
tests, not a production DataHub. The entry point is ``executor.local.controlplane.server.ControlPlane``.
"""
