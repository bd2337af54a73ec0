"""The ``remote-executor`` command line: one module per command group."""
