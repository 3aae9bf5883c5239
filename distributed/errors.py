"""Errors every command shares (a leaf module: the command modules and the CLI both import it)."""

USAGE_ERROR = 2  # exit status of a usage error


class UsageError(Exception):
    """Bad user input: printed as one line, exit status 2."""
