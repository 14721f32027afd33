"""Certificates for apps' hostnames: issued through ACME (HTTP-01, answered by the router) or uploaded, stored with
their key encrypted, served by the router by SNI, renewed by the sweep before they expire.

Every write goes through a function here; the API, CLI and dashboard call these, tasks and receivers only adapt.
"""

import ipaddress
import logging
import re
import socket
from datetime import datetime, timedelta

import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from berth.apps.crypto import encrypt_text
from berth.apps.models import App, Domain
from berth.apps.selectors import app_hostnames
from berth.apps.services import app_row_lock
from berth.audit.services import audit_record
from berth.certs.acme_client import AcmeFailed, acme_enabled, certificate_issue_acme, leaf_of
from berth.certs.models import Certificate, CertificateSource, CertificateState
from berth.certs.selectors import certificates_expiring
from berth.certs.signals import certificate_renew_requested
from berth.core.redis import redis_client
from berth.deploys.events import app_event
from berth.releases.models import ReleaseStatus
from berth.routing.router import Router, RouterError, RouterRefused, get_router, serial_hex
from berth.runtime.nodes import NodeError, SwarmNodes

logger = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
UPLOAD_MAX_BYTES = 64 * 1024
# one attempt of one certificate at a time, across workers; outlives an order's deadline (acme_client)
ATTEMPT_LOCK_TTL = 300
SWEEP_LOCK_TTL = 600
SWEEP_BATCH = 20  # attempts per sweep: a sweep stays short, the next one (a minute later) goes on
ROUTER_NAME_RE = re.compile(r"c-(\d+)")


class CertificateInvalid(ValueError):
    """An uploaded certificate or key Berth will not serve; str() is the message for the user."""


class CertificateNotRenewable(ValueError):
    """A renewal was asked of a certificate Berth cannot renew (uploaded, or ACME is off)."""


# -- names ------------------------------------------------------------------------------------------------------------


def backoff(failures: int) -> timedelta:
    """The wait after the `failures`-th failure in a row: 1 min, doubling, at most 6 h."""
    doublings = min(
        max(0, failures - 1), 20
    )  # capped: 2**n minutes overflows a timedelta after weeks of failures
    return min(BACKOFF_FIRST * 2**doublings, BACKOFF_MAX)


def _has_live_release(app: App) -> bool:
    return app.releases.filter(status=ReleaseStatus.LIVE).exists()


def app_certificate_names(app: App) -> list[str]:
    """The names Berth issues certificates for: the built-in hostname once the app is live, and every custom domain."""
    names = [app.hostname] if _has_live_release(app) else []
    return names + [domain.hostname for domain in app.domains.all()]


def router_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses a name must resolve to for the CA to reach our router: this machine's and the swarm nodes'."""
    addresses: set = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(ipaddress.ip_address(info[4][0]))
    except OSError:
        pass
    try:
        addresses.update(ipaddress.ip_address(node.address) for node in SwarmNodes().nodes() if node.address)
    except (NodeError, ValueError, Exception):  # noqa: BLE001 - no engine or no swarm: this machine's own addresses
        logger.debug("the swarm's node addresses are unknown", exc_info=True)
    return addresses


def _is_ours(address: ipaddress.IPv4Address | ipaddress.IPv6Address, ours: set) -> bool:
    return address.is_loopback or address in ours


def resolution_problem(hostname: str) -> str:
    """Why the CA would not reach this router at `hostname` ("" when the name resolves to one of its addresses).

    Names under .localhost are loopback (RFC 6761 §6.3) even where the system resolver does not say so.
    """
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return ""
    try:
        infos = socket.getaddrinfo(hostname, None)
    except OSError:
        return f"{hostname} does not resolve (add an A or AAAA record pointing at this router)"
    resolved = sorted({info[4][0] for info in infos})
    ours = router_addresses()
    if any(_is_ours(ipaddress.ip_address(address.split("%")[0]), ours) for address in resolved):
        return ""
    return f"{hostname} does not resolve to this router (it resolves to {', '.join(resolved)})"


def _covers(pattern: str, hostname: str) -> bool:
    """Does a certificate name (maybe a wildcard of one label, *.example.com) cover `hostname`?"""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, tail = hostname.partition(".")
        return bool(head) and tail == pattern[2:]
    return pattern == hostname


# -- issuance ---------------------------------------------------------------------------------------------------------


def certificates_ensure(*, app: App) -> list[Certificate]:
    """Make the app's ACME certificate rows match its names: a pending one for each name no certificate covers,
    none for names it no longer has (a removed domain). Returns the rows created. Nothing while ACME is off."""
    created: list[Certificate] = []
    with transaction.atomic():
        app_row_lock(app=app)  # one ensure per app at a time: never two rows for one name
        names = app_certificate_names(app)
        # only a name the app no longer has loses its certificate: not the built-in one of an app between two
        # releases (no release live for a moment)
        current = set(app_hostnames(app))
        certificates = list(Certificate.objects.filter(app=app))
        for certificate in certificates:
            if certificate.source == CertificateSource.ACME and not set(certificate.hostnames) <= current:
                certificate.delete()  # its domain was removed; the router forgets it after the commit
        if not acme_enabled():
            return created
        covered = {name for c in certificates if c.pk is not None for name in c.hostnames}
        for name in names:
            if name not in covered:
                created.append(
                    Certificate.objects.create(
                        app=app,
                        hostnames=[name],
                        source=CertificateSource.ACME,
                        state=CertificateState.PENDING,
                    )
                )
    return created


def _is_due(certificate: Certificate, now: datetime) -> bool:
    if certificate.source != CertificateSource.ACME:
        return False
    if certificate.state == CertificateState.ISSUED:
        return certificate.renew_at is not None and certificate.renew_at <= now
    return certificate.next_attempt_at is None or certificate.next_attempt_at <= now


def _attempt_lock(certificate_id: int) -> redis.lock.Lock:
    return redis_client().lock(
        f"berth:lock:cert:{certificate_id}", timeout=ATTEMPT_LOCK_TTL, thread_local=False
    )


def certificate_attempt(*, certificate_id: int) -> Certificate | None:
    """Issue (or renew) the ACME certificate `certificate_id` if it is due, and serve it.

    Safe to run twice, from two workers at once: one holds the certificate's lock and the other returns None; the
    holder re-reads the row, so a certificate issued a moment ago is not issued again. A failure leaves the
    certificate `failing` (or `pending`, when its name does not point at us) with the reason and the next attempt
    after a doubling backoff; a served certificate keeps serving meanwhile.
    """
    lock = _attempt_lock(certificate_id)
    if not lock.acquire(blocking=False):
        return None
    try:
        certificate = Certificate.objects.select_related("app", "app__team").filter(pk=certificate_id).first()
        if certificate is None or not acme_enabled() or not _is_due(certificate, timezone.now()):
            return certificate
        return _attempt(certificate)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # expired meanwhile: a slow CA; the next attempt re-reads the row anyway


def _attempt(certificate: Certificate) -> Certificate:
    app = certificate.app
    renewal = bool(certificate.serial)
    for hostname in certificate.hostnames:
        if hostname == app.hostname:
            continue  # the apps domain's wildcard record is the operator's: the CA tells if it is wrong
        problem = resolution_problem(hostname)
        if problem:
            return _failed(certificate, problem, pending=not renewal)
    router = get_router()
    try:
        issued = certificate_issue_acme(hostnames=list(certificate.hostnames), router=router)
    except AcmeFailed as failed:
        return _failed(certificate, str(failed), pending=False)
    leaf = leaf_of(issued.chain_pem)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    renew_at = issued.renew_at or not_before + (not_after - not_before) * 2 / 3
    serial = serial_hex(leaf.serial_number)
    Certificate.objects.filter(pk=certificate.pk).update(
        key_encrypted=encrypt_text(issued.private_key_pem),
        chain_pem=issued.chain_pem,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        renew_at=renew_at,
        state=CertificateState.ISSUED,
        reason="",
        failures=0,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    certificate.refresh_from_db()
    names = ", ".join(certificate.hostnames)
    verb = "renewed" if renewal else "issued"
    audit_record(
        action=f"cert.{'renew' if renewal else 'issue'}",
        actor=None,
        team=app.team,
        target=names,
        data={"app": app.name, "certificate": certificate.pk, "serial": serial},
    )
    app_event(
        app.name,
        f"cert.{verb}",
        f"certificate {certificate.pk} for {names} {verb} (serial {serial}, valid until {not_after:%Y-%m-%d %H:%M} UTC)",
    )
    certificate_serve(certificate=certificate, router=router)
    return certificate


def _failed(certificate: Certificate, reason: str, *, pending: bool) -> Certificate:
    now = timezone.now()
    failures = certificate.failures + 1
    state = CertificateState.PENDING if pending else CertificateState.FAILING
    told_before = certificate.state == state and certificate.reason == reason
    Certificate.objects.filter(pk=certificate.pk).update(
        state=state, reason=reason, failures=failures, next_attempt_at=now + backoff(failures), updated_at=now
    )
    certificate.refresh_from_db()
    app, names = certificate.app, ", ".join(certificate.hostnames)
    logger.info("certificate %s for %s: %s (attempt %d)", certificate.pk, names, reason, failures)
    if not told_before:
        app_event(app.name, f"cert.{state}", f"certificate {certificate.pk} for {names}: {reason}")
    if certificate.not_after is not None and certificate.not_after - now < timedelta(
        days=settings.BERTH_CERT_RENEW_DAYS_ALARM
    ):
        app_event(
            app.name,
            "cert.alarm",
            f"the certificate for {names} expires on {certificate.not_after:%Y-%m-%d %H:%M} UTC and its renewal "
            f"keeps failing ({failures} attempts): {reason}",
        )
    return certificate


def certificates_issue_due(*, app: App) -> int:
    """The app's rows made to match its names, then each due one attempted now; returns how many are issued."""
    certificates_ensure(app=app)
    now = timezone.now()
    issued = 0
    for certificate in list(Certificate.objects.filter(app=app, source=CertificateSource.ACME)):
        if _is_due(certificate, now):
            result = certificate_attempt(certificate_id=certificate.pk)
            issued += bool(result is not None and result.state == CertificateState.ISSUED)
    return issued


def certificate_serve(*, certificate: Certificate, router: Router | None = None) -> bool:
    """Give the router the certificate and its hostnames' redirect/HSTS policy. False (logged, an event) when the
    router failed: the sweep's router pass puts it again."""
    router = router or get_router()
    app = certificate.app
    try:
        router.certificate_put(
            name=certificate.router_name, pem=certificate.bundle_pem, hostnames=certificate.hostnames
        )
        for hostname in certificate.hostnames:
            router.host_tls_put(hostname=hostname, redirect_https=app.https_redirect, hsts=app.hsts)
    except RouterError as exc:
        logger.warning("the router did not take certificate %s", certificate.pk, exc_info=True)
        app_event(app.name, "cert.router", f"the router did not take certificate {certificate.pk}: {exc}")
        return False
    return True


def certificate_unserve(*, router_name: str, hostnames: list[str], app_id: int) -> None:
    """After a certificate's row is deleted: the router stops serving it, and drops the redirect/HSTS of each of its
    names no other certificate of the app serves. Router errors are logged: the sweep removes what is left."""
    still_served = {
        name
        for names in Certificate.objects.filter(app_id=app_id)
        .exclude(serial="")
        .values_list("hostnames", flat=True)
        for name in names
    }
    router = get_router()
    try:
        router.certificate_remove(name=router_name)
        for hostname in hostnames:
            if hostname not in still_served:
                router.host_tls_remove(hostname=hostname)
    except RouterError:
        logger.warning("the router did not drop certificate %s", router_name, exc_info=True)


def certificates_router_sync(*, router: Router | None = None) -> int:
    """Make the router serve what the database says: certificates missing there or serving another serial (a router
    restarted from an old disk, a failed put) are put again; certificates of ours the database no longer has are
    removed. Returns how many it fixed."""
    router = router or get_router()
    served = router.certificates()
    fixed = 0
    for certificate in Certificate.objects.exclude(serial="").exclude(key_encrypted="").select_related("app"):
        current = served.get(certificate.router_name)
        if current is None or current.serial != certificate.serial:
            logger.info("the router serves %s for certificate %s: putting it again", current, certificate.pk)
            fixed += certificate_serve(certificate=certificate, router=router)
    known = set(Certificate.objects.values_list("pk", flat=True))
    for name in served:
        match = ROUTER_NAME_RE.fullmatch(name)
        if match and int(match.group(1)) not in known:
            try:
                router.certificate_remove(name=name)
                fixed += 1
            except RouterError:
                logger.warning("the router did not drop the orphan certificate %s", name, exc_info=True)
    return fixed


def _uploaded_expiry_alarms() -> int:
    """Uploaded certificates near expiry (Berth cannot renew them): an alarm event a day for each until replaced.
    ACME ones raise theirs at each failed renewal."""
    raised = 0
    for certificate in certificates_expiring().filter(source=CertificateSource.UPLOADED):
        if redis_client().set(f"berth:certs:alarm:{certificate.pk}", 1, nx=True, ex=24 * 3600):
            app_event(
                certificate.app.name,
                "cert.alarm",
                f"the uploaded certificate {certificate.pk} for {', '.join(certificate.hostnames)} expires on "
                f"{certificate.not_after:%Y-%m-%d %H:%M} UTC: upload its successor (certs:add)",
            )
            raised += 1
    return raised


def certificates_sweep() -> dict[str, int]:
    """The periodic pass (Celery beat, every minute): rows for new names, due issuances and renewals, the router.

    One sweep at a time (a Redis lock; a second one returns at once); each attempt also holds its certificate's
    lock, so a sweep and a queued issuance never order the same name twice.
    """
    lock = redis_client().lock("berth:lock:certs:sweep", timeout=SWEEP_LOCK_TTL, thread_local=False)
    if not lock.acquire(blocking=False):
        return {"skipped": 1}
    try:
        counts = {"created": 0, "attempted": 0, "issued": 0, "router_fixed": 0}
        if acme_enabled():
            apps = App.objects.filter(Q(releases__status=ReleaseStatus.LIVE) | Q(domains__isnull=False))
            for app in apps.distinct().select_related("team"):
                counts["created"] += len(certificates_ensure(app=app))
            now = timezone.now()
            due = list(
                Certificate.objects.filter(source=CertificateSource.ACME)
                .filter(
                    Q(state=CertificateState.ISSUED, renew_at__lte=now)
                    | Q(state__in=[CertificateState.PENDING, CertificateState.FAILING])
                    & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                )
                .order_by("next_attempt_at", "pk")
                .values_list("pk", flat=True)[:SWEEP_BATCH]
            )
            for certificate_id in due:
                counts["attempted"] += 1
                try:
                    result = certificate_attempt(certificate_id=certificate_id)
                except Exception:  # noqa: BLE001 - one broken certificate must not stop the others' renewals
                    logger.exception("certificate %s: the attempt failed unexpectedly", certificate_id)
                    continue
                if result is not None and result.state == CertificateState.ISSUED:
                    counts["issued"] += 1
        counts["alarms"] = _uploaded_expiry_alarms()
        try:
            counts["router_fixed"] = certificates_router_sync()
        except RouterError:
            logger.warning("the router's certificates could not be compared", exc_info=True)
        return counts
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass


# -- what users do (API, CLI, dashboard) ------------------------------------------------------------------------------


def _load_upload(certificate_pem: str, private_key_pem: str) -> tuple[list[x509.Certificate], object]:
    for label, text in (("certificate", certificate_pem), ("private key", private_key_pem)):
        if not isinstance(text, str) or not text.strip():
            raise CertificateInvalid(f"the {label} is empty")
        if len(text.encode()) > UPLOAD_MAX_BYTES:
            raise CertificateInvalid(f"the {label} is larger than {UPLOAD_MAX_BYTES // 1024} KB")
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError:
        raise CertificateInvalid("the certificate is not PEM (-----BEGIN CERTIFICATE-----)") from None
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except TypeError:
        raise CertificateInvalid("the private key is encrypted: upload it without a passphrase") from None
    except ValueError:
        raise CertificateInvalid("the private key is not PEM (-----BEGIN PRIVATE KEY-----)") from None
    return chain, key


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _names_of_other_apps(app: App, names: list[str]) -> list[str]:
    suffix = "." + settings.BERTH_APPS_DOMAIN.lower().rstrip(".")
    others = set(
        Domain.objects.filter(hostname__in=names).exclude(app=app).values_list("hostname", flat=True)
    )
    built_in = {name.removesuffix(suffix): name for name in names if name.endswith(suffix)}
    others.update(
        built_in[other]
        for other in App.objects.filter(name__in=list(built_in))
        .exclude(pk=app.pk)
        .values_list("name", flat=True)
    )
    return sorted(others)


def certificate_upload(
    *, app: App, certificate_pem: str, private_key_pem: str, actor, remote_addr: str | None = None
) -> Certificate:
    """Serve the user's own certificate (leaf first, then its chain) for the app's hostnames it names.

    Checked before anything changes (CertificateInvalid with the message): PEM, at most 64 KB each, the key is the
    certificate's, not expired, names at least one of the app's hostnames. Certificates of the app it makes
    redundant (every name covered) are removed once the router serves it.
    """
    chain, key = _load_upload(certificate_pem, private_key_pem)
    leaf = chain[0]
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateInvalid("the key does not match the certificate")
    now = timezone.now()
    if leaf.not_valid_after_utc <= now:
        raise CertificateInvalid(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        raise CertificateInvalid(
            f"the certificate is valid only from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        patterns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        patterns = []
    hostnames = app_hostnames(app)
    covered = [h for h in hostnames if any(_covers(p, h) for p in patterns)]
    if not covered:
        raise CertificateInvalid(
            f"the certificate names none of the app's hostnames ({', '.join(hostnames)}); "
            f"it names {', '.join(patterns) or 'no DNS name'}"
        )
    taken = _names_of_other_apps(app, [p.lower() for p in patterns if not p.startswith("*.")])
    if taken:
        # the router picks a certificate by SNI: this one must not answer for another team's exact name
        raise CertificateInvalid(f"the certificate also names {', '.join(taken)}, a hostname of another app")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    serial = serial_hex(leaf.serial_number)
    with transaction.atomic():
        certificate = Certificate.objects.create(
            app=app,
            hostnames=covered,
            source=CertificateSource.UPLOADED,
            state=CertificateState.ISSUED,
            serial=serial,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            key_encrypted=encrypt_text(key_pem),
            chain_pem=chain_pem,
        )
    # committed before the router sees it, so the sweep's router pass never takes it for an orphan
    router = get_router()
    try:
        router.certificate_put(
            name=certificate.router_name, pem=certificate.bundle_pem, hostnames=certificate.hostnames
        )
    except RouterError as exc:
        certificate.delete()
        if isinstance(exc, RouterRefused):
            raise CertificateInvalid(f"the router refused the certificate: {exc}") from exc
        raise
    with transaction.atomic():
        replaced = [
            c.pk
            for c in Certificate.objects.filter(app=app).exclude(pk=certificate.pk)
            if set(c.hostnames) <= set(covered)
        ]
        Certificate.objects.filter(pk__in=replaced).delete()
        audit_record(
            action="cert.upload",
            actor=actor,
            remote_addr=remote_addr,
            team=app.team,
            target=", ".join(covered),
            data={"app": app.name, "certificate": certificate.pk, "serial": serial, "replaced": replaced},
        )
    certificate_serve(certificate=certificate, router=router)  # the names' redirect/HSTS policy
    app_event(app.name, "cert.uploaded", f"certificate {certificate.pk} for {', '.join(covered)} uploaded")
    return certificate


def certificate_remove(*, app: App, certificate_id: int, actor, remote_addr: str | None = None) -> None:
    """Stop serving one of the app's certificates and forget it (Certificate.DoesNotExist if not the app's).

    An ACME certificate of a name the app still has is issued again by the next sweep.
    """
    with transaction.atomic():
        certificate = Certificate.objects.get(app=app, pk=certificate_id)
        names = ", ".join(certificate.hostnames)
        certificate.delete()  # the router drops it after the commit (berth.certs.receivers)
        audit_record(
            action="cert.remove",
            actor=actor,
            remote_addr=remote_addr,
            team=app.team,
            target=names,
            data={"app": app.name, "certificate": certificate_id},
        )


def certificate_renew_request(
    *, app: App, certificate_id: int, actor, remote_addr: str | None = None
) -> Certificate:
    """Renew one of the app's ACME certificates now (queued; Certificate.DoesNotExist if not the app's)."""
    certificate = Certificate.objects.get(app=app, pk=certificate_id)
    if certificate.source != CertificateSource.ACME:
        raise CertificateNotRenewable(
            "an uploaded certificate is renewed by uploading its successor (certs:add)"
        )
    if not acme_enabled():
        raise CertificateNotRenewable("ACME is off on this installation (BERTH_ACME_DIRECTORY is not set)")
    now = timezone.now()
    with transaction.atomic():
        Certificate.objects.filter(pk=certificate.pk).update(
            next_attempt_at=now, renew_at=now, updated_at=now
        )
        audit_record(
            action="cert.renew_request",
            actor=actor,
            remote_addr=remote_addr,
            team=app.team,
            target=", ".join(certificate.hostnames),
            data={"app": app.name, "certificate": certificate.pk},
        )
        transaction.on_commit(
            lambda: certificate_renew_requested.send(sender=Certificate, certificate_id=certificate.pk)
        )
    certificate.refresh_from_db()
    return certificate


def app_https_update(
    *,
    app: App,
    https_redirect: bool | None = None,
    hsts: bool | None = None,
    actor,
    remote_addr: str | None = None,
) -> App:
    """Turn the app's HTTP → HTTPS redirect and HSTS on or off; the router applies it to every name a certificate
    serves now (and to later ones when they are served). A router failure changes nothing (RouterError)."""
    changes = {
        field: value
        for field, value in (("https_redirect", https_redirect), ("hsts", hsts))
        if value is not None
    }
    for field, value in changes.items():
        if not isinstance(value, bool):
            raise ValueError(f"{field} must be true or false")
    if not changes:
        return app
    with transaction.atomic():
        app_row_lock(app=app)
        App.objects.filter(pk=app.pk).update(**changes)
        app.refresh_from_db()
        audit_record(
            action="app.https",
            actor=actor,
            remote_addr=remote_addr,
            team=app.team,
            target=app.name,
            data=changes,
        )
        served = {
            name
            for names in Certificate.objects.filter(app=app)
            .exclude(serial="")
            .values_list("hostnames", flat=True)
            for name in names
        }
        router = get_router()
        for hostname in sorted(served):
            router.host_tls_put(hostname=hostname, redirect_https=app.https_redirect, hsts=app.hsts)
    return app
