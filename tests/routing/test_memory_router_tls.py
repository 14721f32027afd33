"""The in-memory router's HTTPS half: it checks and reads what it is given as the HAProxy router does."""

import datetime

import pytest
from berth.routing.memory import InMemoryRouter
from berth.routing.router import RouterError, RouterRefused, ServedCertificate, read_bundle, served_from_pem
from cryptography.hazmat.primitives import serialization

from tests.routing.tls_ca import LocalCA, serial_of


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


def test_certificate_put_returns_the_leaf_read_from_the_bundle(ca):
    router = InMemoryRouter()
    bundle, leaf = ca.issue("Shop.Example.com", "www.shop.example.com")

    served = router.certificate_put(name="c-1", pem=bundle)

    assert served == ServedCertificate(
        name="c-1",
        serial=serial_of(leaf),
        not_after=leaf.not_valid_after_utc,
        hostnames=("shop.example.com", "www.shop.example.com"),
    )
    assert served.not_after.tzinfo == datetime.UTC
    assert router.certificates() == {"c-1": served}
    assert router.certificate_pem("c-1") == bundle


def test_certificate_put_replaces_one_of_the_same_name_and_remove_forgets_it(ca):
    router = InMemoryRouter()
    first, _ = ca.issue("a.example.com")
    second, leaf = ca.issue("a.example.com")
    router.certificate_put(name="c-1", pem=first)
    router.certificate_put(name="c-1", pem=second)
    assert router.certificates()["c-1"].serial == serial_of(leaf)

    router.certificate_remove(name="c-1")
    router.certificate_remove(name="c-1")  # a retried removal converges

    assert router.certificates() == {}


@pytest.mark.parametrize("name", ["", "C-1", "../etc", ".hidden", "c/1", "c 1", "a..b", "x" * 65, None])
def test_a_malformed_certificate_name_is_refused(ca, name):
    bundle, _ = ca.issue("a.example.com")
    with pytest.raises(RouterRefused):
        InMemoryRouter().certificate_put(name=name, pem=bundle)
    with pytest.raises(RouterError):
        InMemoryRouter().certificate_remove(name=name)


def test_a_bundle_without_its_key_or_with_another_key_is_refused(ca):
    bundle, _ = ca.issue("a.example.com")
    other, _ = ca.issue("b.example.com")
    key_only = bundle.split("-----END PRIVATE KEY-----")[0] + "-----END PRIVATE KEY-----\n"
    certificates_only = bundle[len(key_only) :]
    other_key = other.split("-----END PRIVATE KEY-----")[0] + "-----END PRIVATE KEY-----\n"
    router = InMemoryRouter()
    for pem, reason in (
        (certificates_only, "exactly one PEM private key"),
        (key_only, "no PEM certificate"),
        (other_key + certificates_only, "matches its private key"),
        (bundle + other_key, "exactly one PEM private key"),
        ("not pem", "no PEM certificate"),
    ):
        with pytest.raises(RouterRefused, match=reason):
            router.certificate_put(name="c-1", pem=pem)
    assert router.certificates() == {}


def test_served_from_pem_finds_the_leaf_wherever_it_is_in_the_bundle(ca):
    bundle, leaf = ca.issue("a.example.com")
    key, rest = bundle.split("-----END PRIVATE KEY-----\n")
    leaf_pem, root_pem = rest.split("-----END CERTIFICATE-----\n", 1)
    reordered = root_pem + key + "-----END PRIVATE KEY-----\n" + leaf_pem + "-----END CERTIFICATE-----\n"
    assert served_from_pem(name="c-1", pem=reordered).serial == serial_of(leaf)


def test_challenges_are_kept_by_token_and_checked():
    router = InMemoryRouter()
    router.challenge_put(token="tok_EN-1", key_authorization="tok_EN-1.thumb_print-X")
    assert router.challenges() == {"tok_EN-1": "tok_EN-1.thumb_print-X"}
    router.challenge_remove(token="tok_EN-1")
    router.challenge_remove(token="tok_EN-1")
    assert router.challenges() == {}

    for token in ("", "a b", "a/b", "a\nb", "x" * 129, "tok.en"):
        with pytest.raises(RouterRefused):
            router.challenge_put(token=token, key_authorization="a.b")
        with pytest.raises(RouterRefused):
            router.challenge_remove(token=token)
    for key_authorization in ("", "nodot", "a.b c", "a.b\n", "a.b.c"):
        with pytest.raises(RouterRefused):
            router.challenge_put(token="tok", key_authorization=key_authorization)


def test_host_tls_policies_are_kept_by_clean_hostname():
    router = InMemoryRouter()
    router.host_tls_put(hostname="Shop.Example.com.", redirect_https=True, hsts=False)
    router.host_tls_put(hostname="blog.example.com", redirect_https=False, hsts=True)
    assert router.host_tls() == {
        "shop.example.com": {"redirect_https": True, "hsts": False},
        "blog.example.com": {"redirect_https": False, "hsts": True},
    }
    router.host_tls_remove(hostname="shop.example.com")
    router.host_tls_remove(hostname="shop.example.com")
    assert list(router.host_tls()) == ["blog.example.com"]
    with pytest.raises(RouterRefused):
        router.host_tls_put(hostname="not a host", redirect_https=True, hsts=True)


def test_a_bundle_is_normalised_for_the_router_and_refused_when_too_big_for_it(ca):
    bundle, leaf = ca.issue("a.localhost")
    key, rest = bundle.split("-----END PRIVATE KEY-----\n")
    messy = (
        "Bag Attributes: from a pkcs12 export\n\n" + rest + "\n\n" + key + "-----END PRIVATE KEY-----\n"
    ).replace("\n", "\r\n")

    served, normalised = read_bundle(name="c-1", pem=messy)

    assert served.serial == serial_of(leaf)
    assert "\r" not in normalised and "\n\n" not in normalised and "Bag" not in normalised
    assert normalised.startswith("-----BEGIN PRIVATE KEY-----")
    assert (
        normalised.split("-----END PRIVATE KEY-----\n")[1].split("-----END CERTIFICATE-----")[0]
        in leaf.public_bytes(serialization.Encoding.PEM).decode()
    )
    with pytest.raises(RouterRefused, match="at most 15000"):
        InMemoryRouter().certificate_put(name="c-1", pem=bundle + ca.pem * 30)
