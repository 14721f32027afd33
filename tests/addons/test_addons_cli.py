"""The add-on commands through the installed `berth` script against a live server and the real engine."""

import json
import secrets

import pytest

from tests.addons.conftest import _remove_addons
from tests.cli.conftest import assert_one_error_line, ok

pytestmark = pytest.mark.docker


@pytest.fixture
def redis_name(addon_images, shop):
    """A fresh add-on name (a killed run's leftover service must not be taken for it); removed afterwards."""
    name = f"cache-{secrets.token_hex(3)}"
    yield name
    _remove_addons(f"acme-{name}")


def test_create_use_inspect_and_destroy_through_the_cli(cli, shop, redis_name):
    created = ok(cli("addons:create", "redis", "--name", redis_name, "-a", shop))
    assert f"Created {redis_name} (redis), attached to {shop} as REDIS_URL" in created
    assert redis_name in ok(cli("addons", "-a", shop))
    assert ok(cli("redis:cli", redis_name, "-a", shop, "set", "k", "v")).strip() == "OK"
    assert ok(cli("redis:cli", redis_name, "-a", shop, "get", "k")).strip() == "v"
    info = json.loads(ok(cli("addons:info", redis_name, "-a", shop, "--json")))
    assert info["running"] and info["version"].startswith("5:7.") and info["node"]
    assert "REDIS_URL" in ok(cli("config", "-a", shop))

    assert_one_error_line(cli("addons:destroy", redis_name, "-a", shop), contains=f"--confirm {redis_name}")
    assert_one_error_line(cli("addons:info", "nope", "-a", shop), contains="no add-on named 'nope'")
    assert_one_error_line(cli("addons:create", "mysql", "-a", shop), code=2)
    ok(cli("addons:destroy", redis_name, "-a", shop, "--confirm", redis_name))
    assert redis_name not in ok(cli("addons", "-a", shop, "--all"))
