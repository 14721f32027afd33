"""Issuance and renewal against a real ACME CA (pebble) through the real HAProxy router: pebble fetches each
HTTP-01 challenge from the router's HTTP port, and the certificate is then read back over the router's HTTPS port,
verified with pebble's root."""

import socket
import ssl
import uuid
from datetime import timedelta

import pytest
from berth.apps.services import app_destroy, domain_add, domain_remove
from berth.audit.models import AuditEvent
from berth.certs import services
from berth.certs.models import AcmeAccount, Certificate, CertificateState
from berth.certs.selectors import certificates_expiring
from berth.certs.services import (
    certificate_attempt,
    certificate_renew_request,
    certificates_ensure,
    certificates_sweep,
)
from berth.config.celery import app as celery_app
from berth.core.redis import redis_client
from berth.deploys.signals import build_released
from berth.observe.services import app_streams_delete, as_text, events_key
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import release_create
from berth.routing.router import get_router
from cryptography import x509
from django.utils import timezone

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(settings, router, start_pebble):
    """ACME on, against a pebble validating on this test's router; the router is the real HAProxy one."""
    settings.BERTH_ROUTER = "haproxy"
    pebble = start_pebble(router.port)
    settings.BERTH_ACME_DIRECTORY = pebble.directory_url
    settings.BERTH_ACME_CA_BUNDLE = str(pebble.ca_bundle)
    settings.BERTH_ACME_EMAIL = "ops@example.test"
    return pebble


@pytest.fixture
def live_app(make_app):
    """An app with a live release (its image is never run: certificates only need the app to be live)."""
    made = []

    def make():
        app = make_app(f"c{uuid.uuid4().hex[:10]}")
        release = release_create(app=app, image="example/none:1", procfile={}, description="t", actor=None)
        Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.LIVE)
        made.append(app.name)
        return app

    yield make
    for name in made:
        app_streams_delete(app=name)


def served_over_https(router, hostname: str, root_pem: str) -> x509.Certificate:
    """The certificate the router presents for `hostname` (SNI), verified against pebble's root and the name."""
    context = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", router.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def events(app) -> list[tuple[str, str]]:
    return [
        (as_text(fields[b"kind"]), as_text(fields[b"message"]))
        for _, fields in redis_client().xrange(events_key(app.name))
    ]


def issue(app) -> Certificate:
    (certificate,) = certificates_ensure(app=app)
    result = certificate_attempt(certificate_id=certificate.pk)
    assert result is not None
    assert result.state == CertificateState.ISSUED, result.reason
    return result


def test_first_issuance_serves_the_app_hostname_over_https(acme, router, live_app):
    app = live_app()

    counts = certificates_sweep()

    certificate = Certificate.objects.get(app=app)
    assert certificate.state == CertificateState.ISSUED, certificate.reason
    assert counts["issued"] == 1
    assert certificate.hostnames == [app.hostname]
    served = served_over_https(router, app.hostname, acme.root_pem())
    assert format(served.serial_number, "X") == certificate.serial
    assert certificate.not_after == served.not_valid_after_utc
    # renewal two thirds into its lifetime (pebble offers no renewal information)
    lifetime = certificate.not_after - certificate.not_before
    assert abs(certificate.renew_at - (certificate.not_before + lifetime * 2 / 3)) < timedelta(seconds=1)
    assert "BEGIN" not in certificate.key_encrypted and "PRIVATE KEY" in certificate.private_key_pem
    assert AcmeAccount.objects.get(directory=acme.directory_url).uri.startswith("https://127.0.0.1:")
    assert AuditEvent.objects.filter(action="cert.issue", target=app.hostname).exists()
    assert any(kind == "cert.issued" for kind, _ in events(app))


def test_forced_renewal_serves_a_new_serial(acme, router, live_app):
    app = live_app()
    first = issue(app)

    certificate_renew_request(app=app, certificate_id=first.pk, actor=None)
    renewed = certificate_attempt(certificate_id=first.pk)

    assert renewed.state == CertificateState.ISSUED, renewed.reason
    assert renewed.serial != first.serial
    served = served_over_https(router, app.hostname, acme.root_pem())
    assert format(served.serial_number, "X") == renewed.serial
    assert renewed.renew_at > timezone.now()
    assert any(kind == "cert.renewed" for kind, _ in events(app))


def test_a_sweep_run_twice_issues_once(acme, router, live_app):
    app = live_app()
    certificates_sweep()
    first = Certificate.objects.get(app=app)

    again = certificates_sweep()

    assert again["created"] == 0 and again["attempted"] == 0
    assert list(Certificate.objects.filter(app=app).values_list("serial", flat=True)) == [first.serial]


def test_a_second_sweep_waits_for_the_first_and_a_held_certificate_is_left_alone(acme, router, live_app):
    app = live_app()
    (certificate,) = certificates_ensure(app=app)
    sweep_lock = redis_client().lock("berth:lock:certs:sweep", timeout=30)
    assert sweep_lock.acquire(blocking=False)
    try:
        assert certificates_sweep() == {"skipped": 1}
    finally:
        sweep_lock.release()
    attempt_lock = services._attempt_lock(certificate.pk)
    assert attempt_lock.acquire(blocking=False)
    try:
        assert certificate_attempt(certificate_id=certificate.pk) is None
    finally:
        attempt_lock.release()
    certificate.refresh_from_db()
    assert certificate.state == CertificateState.PENDING and certificate.failures == 0


def test_ca_down_fails_with_the_reason_and_backs_off_while_the_old_certificate_serves(acme, router, live_app):
    app = live_app()
    first = issue(app)
    root = acme.root_pem()
    acme.stop()

    certificate_renew_request(app=app, certificate_id=first.pk, actor=None)
    before = timezone.now()
    failing = certificate_attempt(certificate_id=first.pk)

    assert failing.state == CertificateState.FAILING
    assert "cannot be reached" in failing.reason and acme.directory_url in failing.reason
    assert failing.failures == 1
    assert before + timedelta(seconds=55) < failing.next_attempt_at < before + timedelta(seconds=70)
    # not due again before the backoff ends: an immediate retry changes nothing
    assert certificate_attempt(certificate_id=first.pk).failures == 1
    # the second failure in a row waits twice as long
    Certificate.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    again = certificate_attempt(certificate_id=first.pk)
    assert again.failures == 2
    assert again.next_attempt_at - timezone.now() > timedelta(seconds=110)
    # what was served keeps being served, and the row still says so
    served = served_over_https(router, app.hostname, root)
    assert format(served.serial_number, "X") == first.serial == again.serial
    assert any(kind == "cert.failing" for kind, _ in events(app))
    assert not any(kind == "cert.alarm" for kind, _ in events(app))  # 90 days left


def test_near_expiry_and_failing_raises_the_alarm(acme, router, live_app, settings):
    app = live_app()
    first = issue(app)
    acme.stop()
    Certificate.objects.filter(pk=first.pk).update(
        not_after=timezone.now() + timedelta(days=settings.BERTH_CERT_RENEW_DAYS_ALARM - 1),
        renew_at=timezone.now(),
    )

    certificate_attempt(certificate_id=first.pk)

    alarms = [message for kind, message in events(app) if kind == "cert.alarm"]
    assert len(alarms) == 1 and app.hostname in alarms[0] and "cannot be reached" in alarms[0]
    assert [c.pk for c in certificates_expiring().filter(app=app)] == [first.pk]


def test_ca_refusing_the_challenge_fails_with_the_cas_reason(settings, router, start_pebble, live_app):
    # pebble validates on a port where nothing answers: the challenge cannot be fetched
    settings.BERTH_ROUTER = "haproxy"
    pebble = start_pebble(free_port())
    settings.BERTH_ACME_DIRECTORY = pebble.directory_url
    settings.BERTH_ACME_CA_BUNDLE = str(pebble.ca_bundle)
    app = live_app()
    (certificate,) = certificates_ensure(app=app)

    failing = certificate_attempt(certificate_id=certificate.pk)

    assert failing.state == CertificateState.FAILING
    assert failing.reason.startswith(f"the CA refused: {app.hostname}: ")
    assert "connection refused" in failing.reason.lower()
    assert failing.serial == "" and failing.failures == 1
    assert get_router().certificates() == {}


def test_a_custom_domain_that_does_not_resolve_stays_pending_without_calling_the_ca(settings, live_app):
    # no CA listens here: had the attempt called it, the reason would say it cannot be reached
    settings.BERTH_ACME_DIRECTORY = "https://127.0.0.1:9/dir"
    app = live_app()
    domain_add(app=app, hostname="shop.nowhere.invalid", actor=None)
    certificates_ensure(app=app)
    domain_certificate = Certificate.objects.get(app=app, hostnames=["shop.nowhere.invalid"])

    pending = certificate_attempt(certificate_id=domain_certificate.pk)

    assert pending.state == CertificateState.PENDING
    assert pending.reason.startswith("shop.nowhere.invalid does not resolve")
    assert pending.failures == 1 and pending.next_attempt_at > timezone.now()


def test_a_custom_domain_is_issued_and_leaves_with_its_domain(
    acme, router, live_app, settings, django_capture_on_commit_callbacks
):
    settings.BERTH_APPS_DOMAIN = "apps.test"  # custom domains under .localhost are then allowed
    app = live_app()
    hostname = f"shop-{uuid.uuid4().hex[:8]}.localhost"
    domain = domain_add(app=app, hostname=hostname, actor=None)
    certificates_ensure(app=app)
    certificate = Certificate.objects.get(app=app, hostnames=[hostname])

    issued = certificate_attempt(certificate_id=certificate.pk)

    assert issued.state == CertificateState.ISSUED, issued.reason
    served = served_over_https(router, hostname, acme.root_pem())
    assert format(served.serial_number, "X") == issued.serial

    with django_capture_on_commit_callbacks(execute=True):
        domain_remove(domain=domain, actor=None)
        certificates_ensure(app=app)  # what the domains_changed receiver queues

    assert not Certificate.objects.filter(pk=issued.pk).exists()
    assert issued.router_name not in get_router().certificates()
    assert Certificate.objects.filter(app=app, hostnames=[app.hostname]).exists()


def test_a_destroyed_apps_certificates_leave_the_router(
    acme, router, live_app, django_capture_on_commit_callbacks
):
    app = live_app()
    certificate = issue(app)
    assert certificate.router_name in get_router().certificates()

    with django_capture_on_commit_callbacks(execute=True):
        app_destroy(app=app, actor=None)

    assert not Certificate.objects.filter(pk=certificate.pk).exists()
    assert certificate.router_name not in get_router().certificates()


def test_the_sweep_puts_back_what_the_router_lost_and_drops_what_it_should_not_serve(acme, router, live_app):
    app = live_app()
    certificate = issue(app)
    the_router = get_router()
    the_router.certificate_remove(name=certificate.router_name)
    # a certificate of a row that no longer exists (deleted while the router was down)
    orphan_name = f"c-{certificate.pk + 10_000_000}"
    the_router.certificate_put(name=orphan_name, pem=certificate.bundle_pem)

    counts = certificates_sweep()

    served = the_router.certificates()
    assert served[certificate.router_name].serial == certificate.serial
    assert orphan_name not in served
    assert counts["router_fixed"] == 2
    assert (
        format(served_over_https(router, app.hostname, acme.root_pem()).serial_number, "X")
        == certificate.serial
    )


def test_an_app_going_live_is_issued_its_certificate_by_the_queued_task(acme, router, live_app):
    app = live_app()
    celery_app.conf.task_always_eager = True  # the queued task runs here, in this test's database transaction
    try:
        build_released.send(sender=None, app=app)
    finally:
        celery_app.conf.task_always_eager = False

    certificate = Certificate.objects.get(app=app)
    assert certificate.state == CertificateState.ISSUED, certificate.reason
    assert (
        format(served_over_https(router, app.hostname, acme.root_pem()).serial_number, "X")
        == certificate.serial
    )


def test_once_the_ca_is_back_the_failing_renewal_succeeds_even_if_it_forgot_the_account(
    acme, router, start_pebble, live_app
):
    app = live_app()
    first = issue(app)
    acme.stop()
    certificate_renew_request(app=app, certificate_id=first.pk, actor=None)
    assert certificate_attempt(certificate_id=first.pk).state == CertificateState.FAILING

    # the same directory URL again, but a fresh CA: it knows neither our account nor the earlier order
    port = int(acme.directory_url.split(":")[2].split("/")[0])
    back = start_pebble(router.port, listen_port=port)
    Certificate.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    renewed = certificate_attempt(certificate_id=first.pk)

    assert renewed.state == CertificateState.ISSUED, renewed.reason
    assert renewed.serial != first.serial and renewed.failures == 0 and renewed.reason == ""
    served = served_over_https(router, app.hostname, back.root_pem())
    assert format(served.serial_number, "X") == renewed.serial
