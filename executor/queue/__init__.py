"""Task queues the executor consumes: one module per queue flavour (SQS today)."""
