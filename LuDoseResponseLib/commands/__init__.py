"""Subcommands of the ``ludoseresponse`` command line, one module each (see cli.py)."""
