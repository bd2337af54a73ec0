"""Local tools for trying and testing the executor, not parts of it.

``controlplane`` is a stand-in for the slice of DataHub GMS the executor talks to (GraphQL,
REST, an embedded moto SQS/STS), and ``demo`` runs the executor against it with a real recipe.
They need the ``local`` extra. Nothing on the production path (``run``, ``check``, ``doctor``,
the user tools) imports this package; ``tests/ops/test_install_layout.py`` holds that.
"""
