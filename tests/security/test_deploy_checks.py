"""Django's deployment checks: clean once Berth is served over HTTPS, and only the TLS warnings before."""

import re

from tests.conftest import manage

TLS_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}


def _warnings(tmp_path, **env) -> set[str]:
    home = tmp_path / "home"
    result = manage(
        "check", "--deploy", env={"BERTH_HOME": str(home), "BERTH_SECRET_KEY": "", "DATABASE_URL": "", **env}
    )
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"\((security\.[WE]\d+)\)", result.stdout + result.stderr))


def test_check_deploy_is_clean_when_served_over_https(tmp_path):
    assert _warnings(tmp_path, BERTH_PUBLIC_URL="https://berth.example.org") == set()


def test_check_deploy_over_plain_http_warns_only_about_tls(tmp_path):
    assert _warnings(tmp_path, BERTH_PUBLIC_URL="http://127.0.0.1:8000") == TLS_WARNINGS
