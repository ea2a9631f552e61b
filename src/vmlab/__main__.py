"""`python -m vmlab` is the `vmlab` command."""

from vmlab.cli import main

raise SystemExit(main())
