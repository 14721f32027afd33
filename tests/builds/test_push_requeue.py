"""A push whose build no worker takes (its task message lost on the way) hands the build to the workers again and
follows it to its end: it never waits for the sweep to fail the build 10 minutes later. Real Redis stream, real
database; the worker is the test, answering the build_queued signal as the deploys pipeline's receiver does."""

import time

import pytest
from berth.builds import git as push_git
from berth.builds import services
from berth.builds.models import Build, BuildStatus
from berth.builds.signals import build_queued


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_a_build_no_worker_took_is_handed_out_again_and_the_push_follows_it_to_the_end(make_app, monkeypatch):
    monkeypatch.setattr(push_git, "FOLLOW_CHECK_SECONDS", 0.3)
    monkeypatch.setattr(push_git, "REQUEUE_AFTER_SECONDS", (1.0, 5.0))
    app = make_app()
    build = services.build_create(
        app=app, source=Build.Source.GIT, actor=None, git_ref="refs/heads/main", git_sha="a" * 40
    )
    # its first task message was lost: nothing was sent. The worker takes the build when it is handed out again.
    asked: list[float] = []

    def worker(sender, build, **kwargs):
        asked.append(time.monotonic())
        services.build_transition(
            build=build, from_statuses=[BuildStatus.QUEUED], to_status=BuildStatus.BUILDING
        )
        services.log_stream(build).append("-----> built by the worker that was asked again")
        services.build_transition(
            build=build, from_statuses=[BuildStatus.BUILDING], to_status=BuildStatus.SUCCEEDED
        )
        services.build_log_finish(build, None, BuildStatus.SUCCEEDED)

    build_queued.connect(worker, dispatch_uid="test-push-requeue")
    lines: list[str] = []
    started = time.monotonic()
    try:
        push_git.BuildOnPush._follow(build, lines.append)
    finally:
        build_queued.disconnect(dispatch_uid="test-push-requeue")
    took = time.monotonic() - started

    assert len(asked) == 1, "the queued build was handed out again once"
    assert asked[0] - started >= 1.0
    assert took < 10, f"the push waited {took:.1f} s"
    assert "-----> built by the worker that was asked again" in lines
    build.refresh_from_db()
    assert build.status == BuildStatus.SUCCEEDED
