"""GET /metrics: Prometheus' text format behind a bearer token; the figures come from the database, Celery's queues
in Redis and the history windows the shipper writes (observe.history.sample_write, as the shipper calls it)."""

import re
import time

import pytest
from berth.builds.models import Build
from berth.core.redis import redis_client
from berth.observe.history import history_delete, sample_write, window_of
from berth.operations.exposition import metrics_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(settings, tmp_path):
    settings.BERTH_HOME = tmp_path
    settings.BERTH_METRICS_TOKEN = ""
    return metrics_token()


def _scrape(client, token: str) -> dict[str, float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_without_the_token_or_with_another_it_is_401_with_a_detail(client, token):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer nope"}, {"HTTP_AUTHORIZATION": token}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401
        assert "metrics_token" in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_token_is_generated_once_into_berth_home_and_a_set_one_wins(settings, tmp_path, token):
    assert (tmp_path / "metrics-token").read_text().strip() == token
    assert oct((tmp_path / "metrics-token").stat().st_mode & 0o777) == "0o600"
    assert metrics_token() == token
    settings.BERTH_METRICS_TOKEN = "set-by-the-operator"
    assert metrics_token() == "set-by-the-operator"


def test_builds_apps_and_queues_are_counted(client, token, make_app):
    app = make_app("shop")
    before = _scrape(client, token)
    Build.objects.create(app=app, source="git", status="failed")
    Build.objects.create(app=app, source="git", status="failed")
    after = _scrape(client, token)
    assert after['berth_builds{status="failed"}'] == before['berth_builds{status="failed"}'] + 2
    assert after["berth_apps"] == before["berth_apps"]  # the app existed at both scrapes
    assert 'berth_queue_length{queue="builds"}' in after
    assert after["berth_engine_up"] in (0, 1)


def test_an_apps_router_and_process_windows_become_gauges_with_its_team(client, token, make_app):
    app = make_app("shop")
    window = window_of(time.time())
    try:
        sample_write(app="shop", process="web", window=window, values={"cpu": 12.5, "mem": 64, "n": 2})
        sample_write(
            app="shop", process="router", window=window, values={"rps": 3.5, "e5xx": 0.25, "p95": 180}
        )
        samples = _scrape(client, token)
    finally:
        history_delete(app="shop", client=redis_client())
    team = app.team.name
    assert samples[f'berth_process_cpu_percent{{app="shop",team="{team}",process="web"}}'] == 12.5
    assert (
        samples[f'berth_process_memory_bytes{{app="shop",team="{team}",process="web"}}'] == 64 * 1024 * 1024
    )
    assert samples[f'berth_process_running{{app="shop",team="{team}",process="web"}}'] == 2
    assert samples[f'berth_app_requests_per_second{{app="shop",team="{team}"}}'] == 3.5
    assert samples[f'berth_app_5xx_per_second{{app="shop",team="{team}"}}'] == 0.25
    assert samples[f'berth_app_response_p95_seconds{{app="shop",team="{team}"}}'] == 0.18


def test_a_label_value_is_escaped_as_the_format_asks(client, token, make_app):
    from berth.operations.exposition import _labels

    assert _labels({"app": 'a"b\\c\nd'}) == '{app="a\\"b\\\\c\\nd"}'
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    for line in body.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_0-9]+(\{.*\})? -?[0-9.e+]+", line), line
