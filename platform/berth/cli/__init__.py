"""The `berth` command line (berth.cli.main)."""
