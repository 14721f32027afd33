"""A release whose image the GC removed cannot come back: the check releases offer, and the API's answer."""

import pytest


@pytest.fixture
def pruned(make_app, make_team, make_user):
    from berth.releases.services import release_create, releases_mark_image_pruned

    owner = make_user()
    app = make_app(team=make_team(owner=owner), actor=owner)
    releases = [
        release_create(
            app=app,
            image=f"127.0.0.1:5000/{app.name}@sha256:{str(v) * 64}",
            procfile={"web": "python app.py"},
            description=f"v{v}",
            actor=owner,
            status="superseded" if v < 3 else "live",
        )
        for v in (1, 2, 3)
    ]
    assert releases_mark_image_pruned(releases=releases[:1]) == 1
    assert releases_mark_image_pruned(releases=releases[:1]) == 0  # marked once, the first time stays
    return app, releases, owner


def test_release_image_available_refuses_a_pruned_release_only(pruned):
    from berth.releases.services import ImagePruned, release_image_available

    _, releases, _ = pruned
    with pytest.raises(ImagePruned, match=r"the image of v1 was removed on .* roll back to a newer release"):
        release_image_available(releases[0])
    release_image_available(releases[1])
    release_image_available(releases[2])


def test_the_api_refuses_a_rollback_to_a_pruned_release_with_409_and_makes_no_release(pruned, token_client):
    from berth.releases.models import Release

    app, _, owner = pruned
    answer = token_client(owner).post(f"/api/v1/apps/{app.name}/rollback", {"version": 1}, format="json")
    assert answer.status_code == 409, answer.content
    assert "the image of v1 was removed" in answer.json()["detail"]
    assert Release.objects.filter(app=app).count() == 3
