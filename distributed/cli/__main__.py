"""`python -m frontier.distributed.cli ...`: the `frontier` command."""
import sys

from frontier.distributed.cli import main

sys.exit(main())
