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


def docker_client(timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=settings.DOCKER_HOST, version="auto", timeout=timeout)
