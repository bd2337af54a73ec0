"""``python -m executor`` does what the ``remote-executor`` console script does."""

from executor.cli.main import main

raise SystemExit(main())
