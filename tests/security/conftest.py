"""The security suite attacks the real platform as a second team would: it reuses the end-to-end platform
(web, worker, router, against real Docker, Swarm, Redis, PostgreSQL) and the factories of tests/conftest.py."""

from tests.e2e.conftest import (  # noqa: F401  (fixtures, registered by import)
    berth_platform,
    berth_registry,
    leftovers_swept,
    platform_env,
    platform_processes,
    repo,
    tenant,
)
