"""`python -m frontier.cli ...`: the `frontier` command."""
import sys

from frontier.cli import main

sys.exit(main())
