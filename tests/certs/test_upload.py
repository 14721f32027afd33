"""Users' own certificates (certs:add), removal, renewal requests and the per-app HTTPS policy. Uploads that are
refused never reach the router; accepted ones are served by the real HAProxy router."""

import datetime
import socket
import ssl
import uuid

import pytest
from berth.apps.services import domain_add
from berth.audit.models import AuditEvent
from berth.certs.models import Certificate, CertificateSource, CertificateState
from berth.certs.services import (
    CertificateInvalid,
    CertificateNotRenewable,
    app_https_update,
    backoff,
    certificate_remove,
    certificate_renew_request,
    certificate_upload,
    certificates_ensure,
    certificates_sweep,
)
from berth.certs.tasks import certificates_sweep_task
from berth.core.redis import redis_client
from berth.observe.services import app_streams_delete, as_text, events_key
from berth.routing.memory import InMemoryRouter
from berth.routing.router import ROUTERS, get_router
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.django_db

NOW = datetime.datetime.now(datetime.UTC)


class UploadCA:
    """A root that signs leaf certificates for the upload tests."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upload test root")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=30))
            .not_valid_after(NOW + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def leaf(self, names: list[str], *, days: float = 30, starts_in_days: float = -1) -> tuple[str, str, int]:
        """(certificate PEM with the chain, key PEM, serial) for `names`."""
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        start = NOW + datetime.timedelta(days=starts_in_days)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return certificate.public_bytes(serialization.Encoding.PEM).decode() + self.pem, key_pem, serial


@pytest.fixture
def ca():
    return UploadCA()


@pytest.fixture
def app(make_app):
    return make_app(f"u{uuid.uuid4().hex[:10]}")


@pytest.fixture
def memory_router(settings):
    """The in-memory double, for the checks that must refuse before the router is asked at all."""
    the_router = InMemoryRouter()
    ROUTERS["certs-test"] = lambda: the_router
    settings.BERTH_ROUTER = "certs-test"
    yield the_router
    ROUTERS.pop("certs-test", None)


def refused(app, certificate_pem: str, key_pem: str) -> str:
    with pytest.raises(CertificateInvalid) as caught:
        certificate_upload(app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None)
    return str(caught.value)


def test_an_upload_with_another_certificates_key_is_refused(app, ca, memory_router):
    certificate_pem, _, _ = ca.leaf([app.hostname])
    _, other_key, _ = ca.leaf([app.hostname])
    assert refused(app, certificate_pem, other_key) == "the key does not match the certificate"
    assert not Certificate.objects.filter(app=app).exists() and memory_router.certificates() == {}


def test_an_expired_upload_is_refused(app, ca, memory_router):
    certificate_pem, key_pem, _ = ca.leaf([app.hostname], days=10, starts_in_days=-20)
    assert refused(app, certificate_pem, key_pem).startswith("the certificate expired on ")
    assert memory_router.certificates() == {}


def test_an_upload_for_other_names_is_refused(app, ca, memory_router):
    certificate_pem, key_pem, _ = ca.leaf(["www.example.test", "*.other.test"])
    message = refused(app, certificate_pem, key_pem)
    assert message.startswith("the certificate names none of the app's hostnames")
    assert app.hostname in message and "www.example.test" in message
    assert memory_router.certificates() == {}


def test_an_upload_that_is_not_pem_or_too_large_is_refused(app, ca, memory_router):
    certificate_pem, key_pem, _ = ca.leaf([app.hostname])
    assert refused(app, "hello", key_pem).startswith("the certificate is not PEM")
    assert refused(app, certificate_pem, "hello").startswith("the private key is not PEM")
    assert refused(app, certificate_pem + "#" * 64 * 1024, key_pem) == "the certificate is larger than 64 KB"
    assert refused(app, "", key_pem) == "the certificate is empty"
    assert memory_router.certificates() == {}


def test_an_uploaded_wildcard_is_served_for_the_app_and_replaces_its_acme_certificate(
    app, ca, router, settings, django_capture_on_commit_callbacks
):
    settings.BERTH_ROUTER = "haproxy"
    settings.BERTH_APPS_DOMAIN = "apps.test"  # TLS clients match no wildcard of one label (*.localhost)
    acme_row = Certificate.objects.create(app=app, hostnames=[app.hostname], source=CertificateSource.ACME)
    certificate_pem, key_pem, serial = ca.leaf([f"*.{settings.BERTH_APPS_DOMAIN}"])

    with django_capture_on_commit_callbacks(execute=True):
        uploaded = certificate_upload(
            app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None
        )

    assert uploaded.source == CertificateSource.UPLOADED and uploaded.state == CertificateState.ISSUED
    assert uploaded.hostnames == [app.hostname] and uploaded.serial == format(serial, "X")
    assert not Certificate.objects.filter(pk=acme_row.pk).exists()
    assert get_router().certificates()[uploaded.router_name].serial == uploaded.serial
    context = ssl.create_default_context(cadata=ca.pem)
    with socket.create_connection(("127.0.0.1", router.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=app.hostname) as tls:
            served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    assert served.serial_number == serial
    assert AuditEvent.objects.filter(action="cert.upload", target=app.hostname).exists()

    with django_capture_on_commit_callbacks(execute=True):
        certificate_remove(app=app, certificate_id=uploaded.pk, actor=None)

    assert uploaded.router_name not in get_router().certificates()
    assert AuditEvent.objects.filter(action="cert.remove", target=app.hostname).exists()


def test_an_uploaded_wildcard_never_answers_for_another_apps_hostname(app, make_app, ca, router, settings):
    """A team holding a wildcard of the apps domain (its own CA, or a real one) must not be served for another
    team's app, one that exists already or one made later, even while that app has no certificate of its own:
    the router limits a certificate to the hostnames Berth gave it (SNI filters)."""
    settings.BERTH_ROUTER = "haproxy"
    settings.BERTH_APPS_DOMAIN = "apps.test"
    before = make_app(f"u{uuid.uuid4().hex[:10]}")
    certificate_pem, key_pem, serial = ca.leaf([f"*.{settings.BERTH_APPS_DOMAIN}"])
    uploaded = certificate_upload(
        app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None
    )
    after = make_app(f"u{uuid.uuid4().hex[:10]}")

    def served_serial(hostname: str) -> int:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", router.https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=hostname) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

    assert uploaded.hostnames == [app.hostname]
    assert served_serial(app.hostname) == serial
    for victim in (before, after):
        assert served_serial(victim.hostname) != serial, victim.hostname
    certificate_remove(app=app, certificate_id=uploaded.pk, actor=None)


def test_removing_or_renewing_another_apps_certificate_is_not_found(
    app, make_app, ca, memory_router, settings
):
    other = make_app(f"u{uuid.uuid4().hex[:10]}")
    certificate_pem, key_pem, _ = ca.leaf([other.hostname])
    theirs = certificate_upload(
        app=other, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None
    )
    with pytest.raises(Certificate.DoesNotExist):
        certificate_remove(app=app, certificate_id=theirs.pk, actor=None)
    with pytest.raises(Certificate.DoesNotExist):
        certificate_renew_request(app=app, certificate_id=theirs.pk, actor=None)
    assert Certificate.objects.filter(pk=theirs.pk).exists()


def test_an_uploaded_certificate_is_not_renewed_by_request(app, ca, memory_router, settings):
    settings.BERTH_ACME_DIRECTORY = "https://127.0.0.1:9/dir"
    certificate_pem, key_pem, _ = ca.leaf([app.hostname])
    uploaded = certificate_upload(
        app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None
    )
    with pytest.raises(CertificateNotRenewable, match="uploading its successor"):
        certificate_renew_request(app=app, certificate_id=uploaded.pk, actor=None)


def test_renewal_requests_are_refused_while_acme_is_off(app, settings):
    settings.BERTH_ACME_DIRECTORY = ""
    acme_row = Certificate.objects.create(app=app, hostnames=[app.hostname], source=CertificateSource.ACME)
    with pytest.raises(CertificateNotRenewable, match="BERTH_ACME_DIRECTORY"):
        certificate_renew_request(app=app, certificate_id=acme_row.pk, actor=None)


def test_https_policy_changes_reach_every_served_name(app, ca, memory_router):
    certificate_pem, key_pem, _ = ca.leaf([app.hostname])
    certificate_upload(app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None)
    assert memory_router.host_tls() == {app.hostname: {"redirect_https": True, "hsts": False}}

    updated = app_https_update(app=app, https_redirect=False, hsts=True, actor=None, remote_addr="127.0.0.9")

    assert (updated.https_redirect, updated.hsts) == (False, True)
    assert memory_router.host_tls() == {app.hostname: {"redirect_https": False, "hsts": True}}
    assert AuditEvent.objects.get(action="app.https", target=app.name).remote_addr == "127.0.0.9"
    with pytest.raises(ValueError, match="hsts must be true or false"):
        app_https_update(app=app, hsts="yes", actor=None)


def test_the_backoff_doubles_from_one_minute_up_to_six_hours():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff(9) == datetime.timedelta(minutes=256)
    assert backoff(10) == backoff(500) == datetime.timedelta(hours=6)


def test_an_uploaded_certificate_near_expiry_raises_one_alarm_a_day(app, ca, memory_router, settings):
    settings.BERTH_ACME_DIRECTORY = ""  # nothing to issue: only the alarm and the router pass run
    certificate_pem, key_pem, _ = ca.leaf([app.hostname], days=settings.BERTH_CERT_RENEW_DAYS_ALARM - 2)
    uploaded = certificate_upload(
        app=app, certificate_pem=certificate_pem, private_key_pem=key_pem, actor=None
    )
    redis_client().delete("berth:lock:certs:sweep", f"berth:certs:alarm:{uploaded.pk}")
    try:
        first, second = certificates_sweep(), certificates_sweep()
        alarms = [
            as_text(fields[b"message"])
            for _, fields in redis_client().xrange(events_key(app.name))
            if fields[b"kind"] == b"cert.alarm"
        ]
    finally:
        redis_client().delete(f"berth:certs:alarm:{uploaded.pk}")
        app_streams_delete(app=app.name)
    assert (first["alarms"], second["alarms"]) == (1, 0)
    assert len(alarms) == 1 and "upload its successor" in alarms[0] and app.hostname in alarms[0]
    assert first["router_fixed"] == 0  # what the router serves is what the database says


def test_the_beat_schedule_runs_the_sweep_every_minute(settings):
    (entry,) = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == certificates_sweep_task.name
    ]
    assert certificates_sweep_task.name == "berth.certs.sweep" and entry["schedule"] == 60.0


def test_an_app_between_two_live_releases_keeps_its_certificate(app, settings, memory_router):
    settings.BERTH_ACME_DIRECTORY = "https://127.0.0.1:9/dir"
    built_in = Certificate.objects.create(app=app, hostnames=[app.hostname], source=CertificateSource.ACME)
    gone = Certificate.objects.create(app=app, hostnames=["old.example.test"], source=CertificateSource.ACME)

    assert certificates_ensure(app=app) == []  # no release is live: nothing new either

    assert list(Certificate.objects.filter(app=app).values_list("pk", flat=True)) == [built_in.pk]
    assert not Certificate.objects.filter(pk=gone.pk).exists()


def test_an_upload_naming_another_apps_hostname_is_refused(app, make_app, ca, memory_router):
    other = make_app(f"u{uuid.uuid4().hex[:10]}")
    domain_add(app=other, hostname="shop.other-team.test", actor=None)
    for victim in (other.hostname, "shop.other-team.test"):
        certificate_pem, key_pem, _ = ca.leaf([app.hostname, victim])
        assert refused(app, certificate_pem, key_pem) == (
            f"the certificate also names {victim}, a hostname of another app"
        )
    assert memory_router.certificates() == {}
