"""The CLI's fixtures (a live server, `berth` logged in as the owner of team acme) for this folder's CLI tests."""

from tests.cli.conftest import ada, berth, cli, fast_passwords, home, shop  # noqa: F401 - fixtures, used by name
