"""`python -m distributed.cli ...`: the `frontier` command."""
import sys

from distributed.cli import main

sys.exit(main())
