"""`berth certs…` and `berth https:…`: the installed script against the live server, with real certificates from a
test CA; the router is the in-memory double (the live server runs in this process, so it sees the setting)."""

import datetime
import json

import pytest
from berth.certs.models import Certificate
from berth.routing.router import get_router

from tests.cli.conftest import as_json, assert_one_error_line, ok
from tests.support.tls import TestCA

pytestmark = pytest.mark.django_db(transaction=True)


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


def hostname(app: str) -> str:
    from django.conf import settings

    return f"{app}.{settings.BERTH_APPS_DOMAIN}"


def test_certs_add_serves_it_and_certs_lists_it_issued(cli, shop, ca, memory_router):
    leaf = ca.issue(hostname(shop))
    out = ok(cli("certs:add", str(leaf.certificate_path), str(leaf.key_path), "-a", shop))
    assert out.startswith("Added certificate ") and f"for {hostname(shop)} to {shop}: issued until" in out
    certificate_id = Certificate.objects.get(app__name=shop).pk
    assert memory_router.certificates()[f"c-{certificate_id}"].serial == f"{leaf.serial:X}"

    lines = ok(cli("certs", "-a", shop)).splitlines()
    assert lines[0].split() == ["ID", "HOSTNAMES", "SOURCE", "STATE"]
    assert lines[2].split()[:5] == [str(certificate_id), hostname(shop), "uploaded", "issued", "until"]
    assert len(lines) == 3  # no warning: it is far from expiry
    rows = as_json(cli("certs", "-a", shop, "--json"))
    assert rows[0]["state"] == "issued" and rows[0]["serial"] == f"{leaf.serial:X}"

    assert (
        ok(cli("certs:remove", str(certificate_id), "-a", shop))
        == f"Removed certificate {certificate_id} from {shop}\n"
    )
    assert ok(cli("certs", "-a", shop)) == f"{shop} has no certificates yet.\n"


def test_certs_add_refusals_are_one_line(cli, shop, ca, home):
    leaf = ca.issue(hostname(shop))
    other = ca.issue(hostname(shop), stem="other")
    assert_one_error_line(
        cli("certs:add", str(leaf.certificate_path), str(other.key_path), "-a", shop),
        contains="the key does not match the certificate",
    )
    assert_one_error_line(
        cli("certs:add", str(home / "nope.crt"), str(leaf.key_path), "-a", shop),
        contains=f"cannot read the certificate {home / 'nope.crt'}",
    )
    elsewhere = ca.issue("elsewhere.example.net")
    assert_one_error_line(
        cli("certs:add", str(elsewhere.certificate_path), str(elsewhere.key_path), "-a", shop),
        contains="names none of the app's hostnames",
    )
    assert Certificate.objects.count() == 0


def test_certs_shows_pending_and_failing_with_the_reason_and_the_alarm(cli, shop):
    from berth.apps.models import App

    app = App.objects.get(name=shop)
    Certificate.objects.create(app=app, hostnames=["api.example.org"], source="acme")
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    failing = Certificate.objects.create(
        app=app,
        hostnames=[hostname(shop)],
        source="acme",
        state="failing",
        reason="urn:ietf:params:acme:error:connection: timeout fetching the challenge",
        serial="0A",
        not_after=soon,
    )
    out = ok(cli("certs", "-a", shop))
    assert "pending" in out
    assert "failing: urn:ietf:params:acme:error:connection: timeout fetching the challenge" in out
    assert f"Warning: certificate {failing.pk} expires {soon:%Y-%m-%d}" in out
    assert "renewal is failing" in out


def test_certs_renew_of_an_uploaded_one_says_how(cli, shop, ca):
    leaf = ca.issue(hostname(shop))
    created = as_json(cli("certs:add", str(leaf.certificate_path), str(leaf.key_path), "-a", shop, "--json"))
    assert_one_error_line(
        cli("certs:renew", str(created["id"]), "-a", shop), contains="uploading its successor"
    )
    assert_one_error_line(cli("certs:renew", "999999", "-a", shop), contains="no such certificate")


def test_https_redirect_and_hsts_on_and_off(cli, shop):
    assert ok(cli("https:redirect", "off", "-a", shop)) == f"HTTP → HTTPS redirect off for {shop}\n"
    assert ok(cli("https:hsts", "on", "-a", shop)) == f"HSTS on for {shop}\n"
    detail = as_json(cli("apps:info", "-a", shop, "--json"))
    assert (detail["https_redirect"], detail["hsts"]) == (False, True)
    info = ok(cli("apps:info", "-a", shop)).splitlines()
    assert "HTTPS redirect:  off" in info and "HSTS:            on" in info
    assert_one_error_line(cli("https:hsts", "maybe", "-a", shop), code=2, contains="'maybe' is not on or off")
    assert json.loads(ok(cli("https:redirect", "on", "-a", shop, "--json")))["https_redirect"] is True
