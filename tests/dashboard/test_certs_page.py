"""The app page's certificates (issue 13): each one's state in the domains panel, the upload form with its errors
beside the fields, remove/renew, the HTTPS policy, and the banner on the app page and the apps list when one is
close to expiry and will not renew by itself. The router is the in-memory double; the certificates are real ones
from a test CA."""

import datetime
import html
import re

import pytest
from berth.certs.models import Certificate
from berth.routing.router import get_router
from django.contrib.messages import get_messages

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


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def field_error(response, error_id: str) -> str:
    assert response.status_code == 400, response.status_code
    match = re.search(rf'id="{error_id}"[^>]*>([^<]*)<', response.content.decode())
    assert match, f"no #{error_id} on the page"
    return html.unescape(match.group(1))


def states(page: str) -> dict[str, str]:
    """Certificate id -> the state shown beside it."""
    return {
        cert: html.unescape(label).strip()
        for cert, label in re.findall(
            r'data-cert="(\d+)".*?data-field="cert-state">([^<]*)<', page, flags=re.S
        )
    }


def hostname(world) -> str:
    return world.app.hostname


def test_the_domains_panel_shows_pending_issued_and_failing(client_as, world):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=40)
    pending = Certificate.objects.create(app=world.app, hostnames=["www.example.org"], source="acme")
    issued = Certificate.objects.create(
        app=world.app, hostnames=[hostname(world)], source="acme", state="issued", serial="0B", not_after=soon
    )
    failing = Certificate.objects.create(
        app=world.app,
        hostnames=["api.example.org"],
        source="acme",
        state="failing",
        reason="DNS problem: NXDOMAIN looking up A for api.example.org",
    )
    page = client_as("viewer").get("/apps/demo/").content.decode()
    shown = states(page)
    assert shown[str(pending.pk)] == "pending"
    assert shown[str(issued.pk)] == f"issued until {soon:%Y-%m-%d %H:%M} UTC"
    assert shown[str(failing.pk)] == "failing: DNS problem: NXDOMAIN looking up A for api.example.org"
    assert 'id="cert-upload"' not in page  # a viewer sees, does not change
    assert 'id="cert-alarm"' not in page  # nothing close to expiry


def test_an_upload_is_served_and_shown_issued(client_as, world, ca, memory_router):
    leaf = ca.issue(hostname(world))
    client = client_as("member")
    response = client.post(
        "/apps/demo/certs/upload", {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem}
    )
    assert response.status_code == 302
    certificate = Certificate.objects.get(app=world.app)
    assert messages_of(response) == [f"Certificate {certificate.pk} for {hostname(world)} is served."]
    assert memory_router.certificates()[certificate.router_name].serial == f"{leaf.serial:X}"
    assert states(client.get("/apps/demo/").content.decode())[str(certificate.pk)].startswith("issued until ")


def test_an_upload_from_files_works_too(client_as, world, ca):
    leaf = ca.issue(hostname(world))
    with leaf.certificate_path.open("rb") as certificate, leaf.key_path.open("rb") as key:
        response = client_as("member").post(
            "/apps/demo/certs/upload", {"certificate_file": certificate, "private_key_file": key}
        )
    assert response.status_code == 302, response.content[:500]
    assert Certificate.objects.filter(app=world.app, source="uploaded").count() == 1


def test_a_refused_upload_shows_the_error_beside_its_field_and_keeps_the_certificate(client_as, world, ca):
    leaf, other = ca.issue(hostname(world)), ca.issue(hostname(world), stem="other")
    client = client_as("member")
    mismatch = client.post(
        "/apps/demo/certs/upload", {"certificate": leaf.certificate_pem, "private_key": other.key_pem}
    )
    assert field_error(mismatch, "cert-private-key-error") == "the key does not match the certificate"
    assert html.escape(leaf.certificate_pem.splitlines()[1]) in mismatch.content.decode()  # kept as pasted
    assert other.key_pem.splitlines()[1] not in mismatch.content.decode()  # a key is never echoed back

    elsewhere = ca.issue("elsewhere.example.net")
    wrong_names = client.post(
        "/apps/demo/certs/upload",
        {"certificate": elsewhere.certificate_pem, "private_key": elsewhere.key_pem},
    )
    assert "names none of the app's hostnames" in field_error(wrong_names, "cert-certificate-error")
    not_pem = client.post("/apps/demo/certs/upload", {"certificate": "hello", "private_key": leaf.key_pem})
    assert "is not PEM" in field_error(not_pem, "cert-certificate-error")
    assert not Certificate.objects.exists()


def test_remove_and_renew(client_as, world, ca, settings):
    client = client_as("member")
    leaf = ca.issue(hostname(world))
    client.post("/apps/demo/certs/upload", {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem})
    uploaded = Certificate.objects.get(app=world.app)
    refused = client.post(f"/apps/demo/certs/{uploaded.pk}/renew")
    assert any("uploading its successor" in m for m in messages_of(refused))

    settings.BERTH_ACME_DIRECTORY = "https://127.0.0.1:1/dir"  # "ACME is on"; the renewal is only queued here
    acme = Certificate.objects.create(app=world.app, hostnames=["www.example.org"], source="acme")
    renewed = client.post(f"/apps/demo/certs/{acme.pk}/renew")
    assert any(f"Renewing certificate {acme.pk}" in m for m in messages_of(renewed))
    acme.refresh_from_db()
    assert acme.next_attempt_at is not None

    removed = client.post(f"/apps/demo/certs/{uploaded.pk}/remove")
    assert messages_of(removed)[-1] == f"Removed certificate {uploaded.pk}."  # earlier ones not shown yet
    assert not Certificate.objects.filter(pk=uploaded.pk).exists()
    gone = client.post(f"/apps/demo/certs/{uploaded.pk}/remove")
    assert messages_of(gone)[-1] == f"demo has no certificate {uploaded.pk}."


def test_the_https_policy_form(client_as, world):
    client = client_as("member")
    response = client.post("/apps/demo/https", {"hsts": "on"})  # the redirect's box left unticked
    assert messages_of(response) == ["HTTP → HTTPS redirect off, HSTS on."]
    world.app.refresh_from_db()
    assert (world.app.https_redirect, world.app.hsts) == (False, True)


def test_a_viewer_cannot_upload_remove_renew_or_change_the_policy(client_as, world, ca):
    certificate = Certificate.objects.create(app=world.app, hostnames=["www.example.org"], source="acme")
    client = client_as("viewer")
    leaf = ca.issue(hostname(world))
    body = {"certificate": leaf.certificate_pem, "private_key": leaf.key_pem}
    assert client.post("/apps/demo/certs/upload", body).status_code == 403
    assert client.post(f"/apps/demo/certs/{certificate.pk}/remove").status_code == 403
    assert client.post(f"/apps/demo/certs/{certificate.pk}/renew").status_code == 403
    assert client.post("/apps/demo/https", {"hsts": "on"}).status_code == 403
    assert client_as("outsider").get("/apps/demo/").status_code == 404
    assert Certificate.objects.filter(pk=certificate.pk).exists()


def test_the_banner_on_the_app_page_and_the_apps_list_when_renewal_fails_near_expiry(client_as, world):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)
    failing = Certificate.objects.create(
        app=world.app,
        hostnames=[hostname(world)],
        source="acme",
        state="failing",
        reason="the CA is unreachable",
        serial="0C",
        not_after=soon,
    )
    # one far from expiry, failing too: no banner for it
    Certificate.objects.create(
        app=world.app,
        hostnames=["www.example.org"],
        source="acme",
        state="failing",
        reason="x",
        not_after=soon + datetime.timedelta(days=60),
    )
    client = client_as("viewer")
    # the apps list's banner is the team's, whatever its search finds (nothing, a page past the last)
    for path in ("/apps/demo/", "/apps/", "/apps/?q=nothing-has-this-name", "/apps/?page=7"):
        page = client.get(path).content.decode()
        banner = re.search(r'id="cert-alarm".*?</div>', page, flags=re.S).group(0)
        assert f'data-cert-alarm="{failing.pk}"' in banner
        assert "renewal is failing: the CA is unreachable" in banner
        assert f"expires {soon:%Y-%m-%d}" in banner
        assert banner.count("data-cert-alarm=") == 1
    # the other team's apps list does not see it
    assert 'id="cert-alarm"' not in client_as("outsider").get("/apps/").content.decode()


def test_no_banner_once_it_is_renewed(client_as, world):
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=89)
    Certificate.objects.create(
        app=world.app,
        hostnames=[hostname(world)],
        source="acme",
        state="issued",
        serial="0D",
        not_after=later,
    )
    assert 'id="cert-alarm"' not in client_as("viewer").get("/apps/").content.decode()


# --- in a real browser ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_in_chromium_a_refused_upload_then_an_accepted_one(browser, live_server, ca):
    """The upload form as a person uses it: the key's error beside the key, the pasted certificate kept, then the
    certificate listed as issued. (The world is built here: the live server needs committed rows.)"""
    from tests.dashboard.conftest import PageOpener, build_world

    world = build_world()
    leaf, other = ca.issue(world.app.hostname), ca.issue(world.app.hostname, stem="other")
    opener = PageOpener(browser, live_server.url)
    try:
        page = opener("member")
        page.goto("/apps/demo/#domains")
        page.click("#domains summary")
        page.fill("#cert-certificate", leaf.certificate_pem)
        page.fill("#cert-private-key", other.key_pem)
        page.click("#cert-upload button[type=submit]")
        error = page.locator("#cert-private-key-error")
        error.wait_for()
        assert error.inner_text() == "the key does not match the certificate"
        assert page.locator("#cert-certificate").input_value().strip() == leaf.certificate_pem.strip()
        assert page.locator("#cert-private-key").get_attribute("aria-invalid") == "true"

        page.fill("#cert-private-key", leaf.key_pem)
        page.click("#cert-upload button[type=submit]")
        page.wait_for_url(re.compile(r".*/apps/demo/#domains$"))
        badge = page.locator('#certs-list [data-field="cert-state"]')
        assert badge.inner_text().startswith("issued until ")
        assert Certificate.objects.get(app=world.app).source == "uploaded"
    finally:
        opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"
