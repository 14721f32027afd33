"""The one place that makes Docker clients, so DOCKER_HOST and API version negotiation are set once.

Every module that speaks Docker lives in berth.runtime (the container engine); the layers above see its functions,
plain data and `ENGINE_UNAVAILABLE`, never the SDK (the `one-docker-place` contract in pyproject.toml).
"""

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

# What the engine raises when it failed or does not answer: the docker SDK raises requests' ConnectionError when
# the engine's socket does not answer. An API request that meets one of these gets a 503.
ENGINE_UNAVAILABLE = (docker.errors.DockerException, requests.exceptions.ConnectionError)


# The API version each engine (DOCKER_HOST) agreed to, negotiated by this process's first client of it: "auto"
# asks GET /version on every client made, and the engine runs `runc --version` and `docker-init --version` to
# answer it (~8 ms of its CPU each time; ~8,000 times in a make test, the engine's busiest request). An engine
# replaced by an older one while Berth runs would refuse the newer version: Berth's restart negotiates again.
_API_VERSIONS: dict[str, str] = {}


def docker_api_version() -> str:
    """The API version to speak to DOCKER_HOST's engine: negotiated once per process."""
    host = settings.DOCKER_HOST
    if host not in _API_VERSIONS:
        api = docker.APIClient(base_url=host, version="auto", timeout=60)
        try:
            _API_VERSIONS[host] = api.api_version
        finally:
            api.close()
    return _API_VERSIONS[host]


def docker_client(timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=settings.DOCKER_HOST, version=docker_api_version(), timeout=timeout)
