"""A release's page: version, status, image and digest, config keys (never values), Procfile, who and when, and
"roll back to this" for those allowed, never on a release live or deploying."""

import pytest
from berth.releases.models import Release
from berth.releases.services import release_create, release_set_status

pytestmark = pytest.mark.django_db

DIGEST = "sha256:" + "ab" * 32


def body(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_release_page_shows_what_it_runs_and_never_config_values(client_as, world):
    page = body(client_as("member").get("/apps/demo/releases/2/"))
    assert "v2" in page and "SECRET_TOKEN" in page and "s3cr3t-value" not in page
    assert "web: python app.py" in page and "worker: python worker.py" in page
    assert "the-owner" in page and 'id="release-status"' in page


def test_release_page_splits_the_digest_and_offers_rollback_when_allowed(client_as, world):
    release = release_create(
        app=world.app,
        image=f"127.0.0.1:5000/demo@{DIGEST}",
        procfile={"web": "serve"},
        description="Deploy 1234567",
        actor=world.users["owner"],
        status="built",
    )
    page = body(client_as("member").get(f"/apps/demo/releases/{release.version}/"))
    assert f'id="release-digest">{DIGEST}<' in page and "127.0.0.1:5000/demo<" in page
    assert 'id="release-rollback"' in page and "Roll back to this" in page
    assert 'id="release-rollback"' not in body(
        client_as("viewer").get(f"/apps/demo/releases/{release.version}/")
    )
    viewer = body(client_as("viewer").get("/apps/demo/releases/2/"))
    assert 'id="config-keys"' not in viewer and "1 config var (their names are shown to members)" in viewer


@pytest.mark.parametrize("status", ["deploying", "live"])
def test_no_rollback_offered_on_a_release_deploying_or_live(client_as, world, status):
    release = Release.objects.get(app=world.app, version=1)
    release_set_status(release=release, from_statuses=[release.status], to_status=status)
    page = body(client_as("owner").get("/apps/demo/releases/1/"))
    assert 'id="release-rollback"' not in page and f'data-status="{status}"' in page


def test_rollback_from_the_release_page_makes_a_new_release(client_as, world):
    client = client_as("member")
    response = client.post("/apps/demo/rollback", {"version": "1"})
    assert response.status_code == 302
    newest = Release.objects.filter(app=world.app).order_by("-version").first()
    assert newest.version == 3 and newest.description == "Rollback to v1"


def test_release_page_is_404_for_outsiders_and_unknown_versions(client_as, world):
    assert client_as("outsider").get("/apps/demo/releases/1/").status_code == 404
    assert client_as("owner").get("/apps/demo/releases/99/").status_code == 404
