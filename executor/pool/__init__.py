"""One executor pool: its supervisor and the actors that lease, poll, resolve, run and report."""
