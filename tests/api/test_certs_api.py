"""API v1 for certificates: upload (served by the router), list, show, remove, renew, and the per-app HTTPS policy
through PATCH /apps/<app>. The router is the in-memory double here (the real HAProxy serving uploads is
tests/certs'); the certificates are real ones from a test CA."""

import datetime

import pytest
import yaml
from berth.audit.models import AuditEvent
from berth.certs.models import Certificate
from berth.routing.router import get_router

from tests.support.tls import TestCA

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_router(settings):
    settings.BERTH_ROUTER = "memory"
    router = get_router()
    yield router
    for name in list(router.certificates()):
        router.certificate_remove(name=name)


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


def upload(client, leaf, app="demo"):
    body = {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem}
    return client.post(f"/api/v1/apps/{app}/certs", body, format="json")


def test_an_upload_is_served_and_listed(world, ca, memory_router):
    leaf = ca.issue("www.example.org")
    response = upload(world.client("member"), leaf)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["hostnames"] == ["www.example.org"]
    assert (created["source"], created["state"], created["reason"]) == ("uploaded", "issued", "")
    assert created["serial"] == f"{leaf.serial:X}"
    assert created["expiring"] is False
    served = memory_router.certificates()[f"c-{created['id']}"]
    assert served.serial == created["serial"] and served.hostnames == ("www.example.org",)

    listed = world.client("viewer").get("/api/v1/apps/demo/certs").json()
    assert [c["id"] for c in listed] == [created["id"]]
    one = world.client("viewer").get(f"/api/v1/apps/demo/certs/{created['id']}").json()
    assert one == listed[0]
    assert AuditEvent.objects.filter(action="cert.upload", target="www.example.org").exists()


def test_a_certificate_close_to_expiry_says_so(world, ca):
    leaf = ca.issue("www.example.org", days=3)
    assert upload(world.client("member"), leaf).json()["expiring"] is True


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ca: ({"certificate": "hello", "private_key": "world"}), "PEM"),
        (
            lambda ca: {
                "certificate": ca.issue("www.example.org").certificate_pem,
                "private_key": ca.issue("www.example.org", stem="other").key_pem,
            },
            "the key does not match the certificate",
        ),
        (
            lambda ca: _pair(ca.issue("www.example.org", days=1, not_before=_days_ago(10))),
            "the certificate expired on",
        ),
        (lambda ca: _pair(ca.issue("elsewhere.example.net")), "names none of the app's hostnames"),
        (lambda ca: {"certificate": "x"}, "private_key"),
    ],
    ids=["not-pem", "key-mismatch", "expired", "other-names", "missing-field"],
)
def test_a_bad_upload_is_400_with_the_reason_and_nothing_is_served(world, ca, memory_router, make, message):
    response = world.client("member").post("/api/v1/apps/demo/certs", make(ca), format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert Certificate.objects.count() == 0
    assert memory_router.certificates() == {}


def _pair(leaf):
    return {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem}


def _days_ago(days):
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)


def test_remove_forgets_it_and_another_apps_certificate_is_404(world, ca, make_app):
    created = upload(world.client("member"), ca.issue("www.example.org")).json()
    other = make_app("other-app", team=world.team, actor=world.users["owner"])
    response = world.client("member").delete(f"/api/v1/apps/{other.name}/certs/{created['id']}")
    assert response.status_code == 404 and "no such certificate" in response.json()["detail"]
    assert world.client("member").delete(f"/api/v1/apps/demo/certs/{created['id']}").status_code == 204
    assert not Certificate.objects.filter(pk=created["id"]).exists()
    assert world.client("viewer").get(f"/api/v1/apps/demo/certs/{created['id']}").status_code == 404


def test_renewing_an_uploaded_certificate_is_409_saying_how(world, ca):
    created = upload(world.client("member"), ca.issue("www.example.org")).json()
    response = world.client("member").post(
        f"/api/v1/apps/demo/certs/{created['id']}/renew", {}, format="json"
    )
    assert response.status_code == 409
    assert "uploading its successor" in response.json()["detail"]


def test_renewing_an_acme_certificate_queues_it_now(world, settings):
    settings.BERTH_ACME_DIRECTORY = "https://127.0.0.1:1/dir"  # only "ACME is on": nothing reaches it here
    certificate = Certificate.objects.create(app=world.app, hostnames=["www.example.org"], source="acme")
    before = datetime.datetime.now(datetime.UTC)
    response = world.client("member").post(
        f"/api/v1/apps/demo/certs/{certificate.pk}/renew", {}, format="json"
    )
    assert response.status_code == 202, response.content
    certificate.refresh_from_db()
    assert certificate.next_attempt_at >= before - datetime.timedelta(seconds=1)
    assert response.json()["next_attempt_at"] is not None


def test_patch_app_turns_redirect_and_hsts_on_and_off_on_the_served_names(world, ca, memory_router):
    client = world.client("member")
    upload(client, ca.issue("www.example.org"))
    detail = client.get("/api/v1/apps/demo").json()
    assert (detail["https_redirect"], detail["hsts"]) == (True, False)

    response = client.patch("/api/v1/apps/demo", {"https_redirect": False, "hsts": True}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["https_redirect"], response.json()["hsts"]) == (False, True)
    world.app.refresh_from_db()
    assert (world.app.https_redirect, world.app.hsts) == (False, True)
    assert AuditEvent.objects.filter(action="app.https", target="demo").exists()


def test_patch_app_refuses_a_non_boolean_and_changes_nothing(world):
    response = world.client("member").patch(
        "/api/v1/apps/demo", {"hsts": "yes", "deploy_branch": "prod"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "hsts: must be true or false"
    world.app.refresh_from_db()
    assert (world.app.hsts, world.app.deploy_branch) == (False, "main")


def test_a_viewer_may_not_upload(world, ca):
    response = upload(world.client("viewer"), ca.issue("www.example.org"))
    assert response.status_code == 403 and "needs the member role" in response.json()["detail"]


def test_the_schema_documents_the_certificate_routes(world, client):
    schema = yaml.safe_load(client.get("/api/v1/schema/").content)
    paths = schema["paths"]
    assert set(paths["/api/v1/apps/{app}/certs"]) >= {"get", "post"}
    assert set(paths["/api/v1/apps/{app}/certs/{certificate_id}"]) >= {"get", "delete"}
    assert "post" in paths["/api/v1/apps/{app}/certs/{certificate_id}/renew"]
    components = schema["components"]["schemas"]
    assert {"state", "reason", "not_after", "expiring"} <= set(components["Certificate"]["properties"])
    assert {"https_redirect", "hsts"} <= set(components["PatchedAppChange"]["properties"])
