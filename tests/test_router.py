"""The router's base: HAProxy in master-worker mode with an admin socket and a Berth 404 for unknown hosts."""

import subprocess

import httpx
from berth.routing.haproxy import admin_command, write_config


def test_rendered_configuration_is_valid_for_haproxy(tmp_path, settings):
    paths = write_config(http_port=18080, directory=tmp_path)
    result = subprocess.run(["haproxy", "-c", "-f", str(paths.config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_host_gets_the_berth_404_page(router):
    response = httpx.get(f"http://127.0.0.1:{router.port}/", headers={"Host": "nope.localhost"})
    assert response.status_code == 404
    assert "No such app" in response.text


def test_admin_socket_answers_runtime_commands(router):
    assert "Name: HAProxy" in admin_command("show info")
    assert "app_001" in admin_command("show servers state app_001")
