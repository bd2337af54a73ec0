"""DataHub wire format: the GMS client, aspects, URNs and the queue envelope."""
