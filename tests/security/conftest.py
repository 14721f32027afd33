"""The security suite attacks the real platform as a second team would: it reuses the end-to-end platform
(web, worker, router, against real Docker, Swarm, Redis, PostgreSQL) and the control plane's factories."""

import pytest

from tests.control_plane.conftest import (  # noqa: F401  (fixtures, registered by import)
    make_app,
    make_team,
    make_user,
    token_client,
    world,
)
from tests.e2e.conftest import (  # noqa: F401  (fixtures, registered by import)
    berth_platform,
    berth_registry,
    platform_env,
    repo,
    tenant,
)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 would make each factory user cost ~100 ms
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
