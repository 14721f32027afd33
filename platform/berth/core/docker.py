"""One place that makes Docker clients, so DOCKER_HOST and API version negotiation are set once."""

import docker
from django.conf import settings


def docker_client(timeout: int = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=settings.DOCKER_HOST, version="auto", timeout=timeout)
