"""The one Docker client factory, against the real engine: the API version is negotiated once per process."""

import docker.api.client
import pytest
from berth.runtime import client as runtime_client
from berth.runtime.client import docker_client

pytestmark = pytest.mark.docker


def test_the_api_version_is_asked_of_the_engine_once_per_process(monkeypatch):
    # GET /version makes the engine run `runc --version` and `docker-init --version`: every client made with
    # "auto" asked it, ~8,000 times a make test
    monkeypatch.setattr(runtime_client, "_API_VERSIONS", {})
    asked = []
    real = docker.api.client.APIClient._retrieve_server_version

    def counted(self):
        asked.append(1)
        return real(self)

    monkeypatch.setattr(docker.api.client.APIClient, "_retrieve_server_version", counted)
    clients = [docker_client() for _ in range(3)]
    assert all(each.ping() for each in clients)
    assert len(asked) == 1
    assert {each.api.api_version for each in clients} == {real(clients[0].api)}


def test_an_engine_that_does_not_answer_is_an_engine_error(monkeypatch, settings, tmp_path):
    monkeypatch.setattr(runtime_client, "_API_VERSIONS", {})
    settings.DOCKER_HOST = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(runtime_client.ENGINE_UNAVAILABLE):
        docker_client()
    assert runtime_client._API_VERSIONS == {}  # nothing remembered: the next client asks again
