"""Berth as an ACME client (RFC 8555), through certbot's maintained `acme` library: the installation's account and
the HTTP-01 issuance of one certificate, its challenges answered by the router.

Every failure leaves as `AcmeFailed` with a reason a user can act on: the CA's own problem detail when it refused,
"the CA at … cannot be reached" when it is down.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.db import IntegrityError

from berth.apps.crypto import decrypt_text, encrypt_text
from berth.certs.models import AcmeAccount
from berth.routing.router import Router, RouterError

logger = logging.getLogger(__name__)

USER_AGENT = "berth (acme-python)"
NETWORK_TIMEOUT = 30  # seconds per HTTP request to the CA
ORDER_DEADLINE = timedelta(seconds=90)  # validation and finalisation of one order


class AcmeFailed(Exception):
    """An issuance or account registration did not succeed; str() is the reason shown to the user."""


@dataclass(frozen=True)
class Issued:
    private_key_pem: str
    chain_pem: str  # leaf first
    renew_at: datetime | None  # the CA's suggested renewal time (ARI), None when it offers none


def acme_enabled() -> bool:
    return bool(settings.BERTH_ACME_DIRECTORY)


def _verify() -> str | bool:
    # requests takes a CA bundle path where it takes True (the system's store)
    return settings.BERTH_ACME_CA_BUNDLE or True


def _problem(error: messages.Error | None) -> str:
    if error is None:
        return "the CA gave no reason"
    return error.detail or error.title or error.description or str(error.typ or "unknown error")


def _reason(exc: Exception) -> str:
    """What went wrong, in the CA's words when it said something."""
    if isinstance(exc, errors.ValidationError):
        parts = []
        for authzr in exc.failed_authzrs:
            name = authzr.body.identifier.value
            details = [_problem(ch.error) for ch in authzr.body.challenges if ch.error is not None]
            parts.append(f"{name}: {'; '.join(details) or 'the challenge failed'}")
        return "the CA refused: " + " | ".join(parts)
    if isinstance(exc, errors.IssuanceError):
        return f"the CA refused: {_problem(exc.error)}"
    if isinstance(exc, messages.Error):
        return f"the CA refused: {_problem(exc)}"
    if isinstance(exc, errors.TimeoutError):
        return "the CA did not finish validating or issuing in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"the CA at {settings.BERTH_ACME_DIRECTORY} has a TLS certificate we do not trust "
            "(BERTH_ACME_CA_BUNDLE names the PEM file to trust)"
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return f"the CA at {settings.BERTH_ACME_DIRECTORY} cannot be reached ({type(exc).__name__})"
    if isinstance(exc, RouterError):
        return f"the router could not answer the challenge: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _network(key: jose.JWK | None = None) -> client.ClientNetwork:
    # verify_ssl goes to requests' `verify`, which takes a CA bundle's path as well as True
    return client.ClientNetwork(key, verify_ssl=_verify(), user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT)


def _account_row() -> AcmeAccount:
    """The account row of this directory, created once with a new key (a race ends with the same row)."""
    directory = settings.BERTH_ACME_DIRECTORY
    account = AcmeAccount.objects.filter(directory=directory).first()
    if account is not None:
        return account
    key = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    try:
        return AcmeAccount.objects.create(
            directory=directory,
            key_encrypted=encrypt_text(json.dumps(key.to_json())),
            email=settings.BERTH_ACME_EMAIL,
        )
    except IntegrityError:
        return AcmeAccount.objects.get(directory=directory)


def account_client() -> client.ClientV2:
    """A client signed in as the installation's account, registering it first if this CA has not seen it.

    Registering with the same key twice (two workers at once) gives the same account: the CA answers the second
    with the first's URL.
    """
    if not acme_enabled():
        raise AcmeFailed("ACME is off (BERTH_ACME_DIRECTORY is not set)")
    account = _account_row()
    key = jose.JWKRSA.json_loads(decrypt_text(account.key_encrypted))
    net = _network(key)
    try:
        directory = client.ClientV2.get_directory(settings.BERTH_ACME_DIRECTORY, net)
        acme = client.ClientV2(directory, net)
        if account.uri:
            net.account = messages.RegistrationResource(uri=account.uri, body=messages.Registration())
            return acme
        contact = {"email": account.email} if account.email else {}
        try:
            registration = acme.new_account(
                messages.NewRegistration.from_data(terms_of_service_agreed=True, **contact)
            )
            uri = registration.uri
        except errors.ConflictError as conflict:
            uri = conflict.location
            net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
    except (errors.Error, messages.Error, requests.exceptions.RequestException) as exc:
        raise AcmeFailed(_reason(exc)) from exc
    AcmeAccount.objects.filter(pk=account.pk).update(uri=uri)
    logger.info("registered the ACME account %s at %s", uri, settings.BERTH_ACME_DIRECTORY)
    return acme


def _new_private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _http01(authzr: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if isinstance(challb.chall, challenges.HTTP01):
            return challb
    raise AcmeFailed(f"the CA offers no HTTP-01 challenge for {authzr.body.identifier.value}")


def certificate_issue_acme(*, hostnames: list[str], router: Router) -> Issued:
    """Order a certificate for `hostnames` with a new key, answering each HTTP-01 challenge from the router.

    The challenges are removed from the router whatever happens. AcmeFailed with the reason on any failure.
    """
    try:
        return _issue(hostnames=hostnames, router=router)
    except AcmeFailed as failed:
        cause = failed.__cause__
        if not (isinstance(cause, messages.Error) and cause.code == "accountDoesNotExist"):
            raise
    # the CA forgot the account (a test CA restarted, an account deactivated): register again, once
    AcmeAccount.objects.filter(directory=settings.BERTH_ACME_DIRECTORY).update(uri="")
    return _issue(hostnames=hostnames, router=router)


def _issue(*, hostnames: list[str], router: Router) -> Issued:
    acme = account_client()
    private_key_pem = _new_private_key_pem()
    csr = crypto_util.make_csr(private_key_pem.encode(), domains=hostnames)
    tokens: list[str] = []
    try:
        order = acme.new_order(csr)
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # the CA still trusts an earlier validation of this name
            challb = _http01(authzr)
            response, validation = challb.response_and_validation(acme.net.key)
            token = challb.chall.encode("token")
            router.challenge_put(token=token, key_authorization=validation)
            tokens.append(token)
            acme.answer_challenge(challb, response)
        # the library compares the deadline with a naive local datetime.now()
        order = acme.poll_and_finalize(order, deadline=datetime.now() + ORDER_DEADLINE)  # noqa: DTZ005
    except AcmeFailed:
        raise
    except (errors.Error, messages.Error, requests.exceptions.RequestException, RouterError) as exc:
        raise AcmeFailed(_reason(exc)) from exc
    finally:
        for token in tokens:
            try:
                router.challenge_remove(token=token)
            except RouterError:
                logger.warning("could not remove the ACME challenge %s from the router", token, exc_info=True)
    chain_pem = order.fullchain_pem
    return Issued(
        private_key_pem=private_key_pem, chain_pem=chain_pem, renew_at=_ari_renewal(acme, chain_pem)
    )


def _ari_renewal(acme: client.ClientV2, chain_pem: str) -> datetime | None:
    """The CA's suggested renewal time (ACME Renewal Information) when its directory offers it."""
    try:
        suggested, _ = acme.renewal_time(chain_pem.encode())
    except errors.ARIError:
        logger.warning("the CA's renewal information could not be read", exc_info=True)
        return None
    if suggested is None:
        return None
    return suggested if suggested.tzinfo else suggested.replace(tzinfo=UTC)


def leaf_of(chain_pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain_pem.encode())[0]
