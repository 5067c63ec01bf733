"""`python -m trainer --help`: see trainer/cli.py."""

from trainer.cli import main

raise SystemExit(main())
