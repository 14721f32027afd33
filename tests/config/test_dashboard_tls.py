"""The dashboard and API behind the router's TLS at BERTH_DASHBOARD_HOST (issue 13): settings read at start-up, so
each case runs manage.py in a fresh interpreter with its own environment."""

import json
import re

from tests.conftest import manage

SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n, None) for n in ("
    "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_PROXY_SSL_HEADER', 'SECURE_HSTS_SECONDS', "
    "'SECURE_SSL_REDIRECT', 'SECURE_SSL_HOST', 'CSRF_TRUSTED_ORIGINS', 'ALLOWED_HOSTS')}))"
)


def _environment(tmp_path, **env) -> dict:
    base = {
        "BERTH_HOME": str(tmp_path / "home"),
        "BERTH_SECRET_KEY": "",
        "DATABASE_URL": "",
        "BERTH_PUBLIC_URL": "",
    }
    return base | env


def _settings(tmp_path, **env) -> dict:
    result = manage("shell", "--no-imports", "-c", SHOW, env=_environment(tmp_path, **env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_dashboard_host_turns_on_secure_cookies_hsts_and_the_forwarded_scheme(tmp_path):
    values = _settings(tmp_path, BERTH_DASHBOARD_HOST="Berth.Example.org", BERTH_HTTPS_PORT="443")
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SECURE_HSTS_SECONDS"] >= 30 * 24 * 3600
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_SSL_HOST"] == "berth.example.org"
    assert "https://berth.example.org" in values["CSRF_TRUSTED_ORIGINS"]


def test_a_router_https_port_other_than_443_is_in_the_origin_and_the_redirect(tmp_path):
    values = _settings(
        tmp_path,
        BERTH_DASHBOARD_HOST="berth.localhost",
        BERTH_HTTPS_PORT="8443",
        BERTH_ALLOWED_HOSTS="127.0.0.1",
    )
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://berth.localhost:8443"]
    assert values["SECURE_SSL_HOST"] == "berth.localhost:8443"
    assert values["ALLOWED_HOSTS"] == ["127.0.0.1", "berth.localhost"]


def test_without_a_dashboard_host_nothing_changes(tmp_path):
    values = _settings(tmp_path, BERTH_DASHBOARD_HOST="")
    assert values["SESSION_COOKIE_SECURE"] is False and values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["CSRF_TRUSTED_ORIGINS"] == [] and values["SECURE_SSL_HOST"] is None


def test_a_dashboard_host_without_an_https_port_stops_start_up(tmp_path):
    result = manage(
        "check", env=_environment(tmp_path, BERTH_DASHBOARD_HOST="berth.localhost", BERTH_HTTPS_PORT="0")
    )
    assert result.returncode != 0
    assert "BERTH_DASHBOARD_HOST needs the router's HTTPS port" in result.stderr


def test_check_deploy_is_clean_with_a_dashboard_host(tmp_path):
    """Nothing silenced: every deployment check passes with BERTH_DASHBOARD_HOST alone (no BERTH_PUBLIC_URL)."""
    result = manage("check", "--deploy", env=_environment(tmp_path, BERTH_DASHBOARD_HOST="berth.example.org"))
    assert result.returncode == 0, result.stderr
    assert re.findall(r"\((security\.[WE]\d+)\)", result.stdout + result.stderr) == []
    assert "System check identified no issues" in result.stdout
