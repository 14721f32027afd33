"""Destroying an app leaves nothing another app of the same name could inherit: no repository, no logs."""

import pytest
from berth.apps.services import app_destroy
from berth.builds.repos import repo_path
from berth.core.redis import redis_client
from berth.gitserver.services import repo_ensure
from berth.observe.metrics import health_key
from berth.observe.services import events_key, log_entries_append, logs_key


@pytest.fixture
def home(settings, tmp_path):
    settings.BERTH_HOME = tmp_path / "home"
    settings.BERTH_HOME.mkdir()
    return settings.BERTH_HOME


def test_a_destroyed_apps_repository_and_streams_are_gone_and_its_name_starts_afresh(
    home, make_app, make_user, django_capture_on_commit_callbacks
):
    owner = make_user()
    app = make_app("t-destroyed", actor=owner)
    repo = repo_ensure(app_name=app.name)
    (repo / "refs" / "heads" / "main").write_text("0" * 40 + "\n")  # the old code's branch
    log_entries_append(
        app=app.name,
        entries=[
            {
                "ts": "2026-01-01T00:00:00Z",
                "process": "web",
                "instance": "web.1",
                "stream": "stdout",
                "line": "x",
            }
        ],
    )
    redis_client().xadd(events_key(app.name), {"kind": "test"})
    redis_client().xadd(health_key(app.name), {"sample": "1"})

    with django_capture_on_commit_callbacks(execute=True):
        app_destroy(app=app, actor=owner)

    assert not repo_path(app_name="t-destroyed").exists()
    assert not list((home / "repos").glob("*t-destroyed*"))  # nor a renamed leftover
    assert not redis_client().exists(
        logs_key("t-destroyed"), events_key("t-destroyed"), health_key("t-destroyed")
    )
    again = make_app("t-destroyed", actor=owner)
    assert not (repo_ensure(app_name=again.name) / "refs" / "heads" / "main").exists()
