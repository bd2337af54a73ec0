"""Delivery of results to GMS: the durable outbox of terminal results."""
