"""App.url: https://… once the app's built-in hostname has a certificate the router serves and HTTPS is on, http://…
otherwise. What the API, the CLI and the push output show."""

import datetime

import pytest
from berth.certs.models import Certificate, CertificateSource, CertificateState
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture
def ports(settings):
    settings.BERTH_APPS_DOMAIN = "apps.example.net"
    settings.BERTH_HTTP_PORT = 8080
    settings.BERTH_HTTPS_PORT = 8443
    return settings


def certificate(app, *, hostnames=None, serial="0A1B", days=30, state=CertificateState.ISSUED):
    return Certificate.objects.create(
        app=app,
        hostnames=hostnames or [app.hostname],
        source=CertificateSource.ACME,
        state=state,
        serial=serial,
        not_after=timezone.now() + datetime.timedelta(days=days) if serial else None,
    )


def test_http_until_the_built_in_hostname_has_a_served_certificate(ports, make_app):
    app = make_app("shop")
    assert app.url == "http://shop.apps.example.net:8080"
    certificate(app, serial="", state=CertificateState.PENDING)  # asked for, not issued: not served
    certificate(app, hostnames=["www.shop.test"])  # a custom domain's: the URL names the built-in hostname
    certificate(app, days=-1)  # expired
    assert app.url == "http://shop.apps.example.net:8080"
    certificate(app)
    assert app.url == "https://shop.apps.example.net:8443"


def test_a_failing_renewal_still_serves_the_issued_certificate(ports, make_app):
    app = make_app("shop")
    certificate(app, state=CertificateState.FAILING)
    assert app.url == "https://shop.apps.example.net:8443"


def test_no_port_suffix_on_443_and_http_when_the_router_has_no_https_port(ports, make_app):
    app = make_app("shop")
    certificate(app)
    ports.BERTH_HTTPS_PORT = 443
    assert app.url == "https://shop.apps.example.net"
    ports.BERTH_HTTPS_PORT = 0
    assert app.url == "http://shop.apps.example.net:8080"


def test_the_api_shows_the_https_url(ports, make_user, make_team, make_app, token_client):
    owner = make_user()
    app = make_app("shop", team=make_team(owner=owner), actor=owner)
    client = token_client(owner)
    assert client.get("/api/v1/apps/shop").json()["url"] == "http://shop.apps.example.net:8080"
    certificate(app)
    assert client.get("/api/v1/apps/shop").json()["url"] == "https://shop.apps.example.net:8443"
    assert [a["url"] for a in client.get("/api/v1/apps").json()] == ["https://shop.apps.example.net:8443"]


def test_the_apps_list_reads_the_certificates_in_one_query_whatever_the_number_of_apps(
    ports, make_user, make_team, make_app, token_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner = make_user()
    team = make_team(owner=owner)
    client = token_client(owner)

    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/v1/apps").status_code == 200
        return len(queries)

    certificate(make_app("shop", team=team, actor=owner))
    list_queries()  # the token's first use is written once
    one = list_queries()
    for name in ("cart", "pay", "mail"):
        certificate(make_app(name, team=team, actor=owner))
    assert list_queries() == one
    assert {a["url"] for a in client.get("/api/v1/apps").json()} == {
        f"https://{name}.apps.example.net:8443" for name in ("shop", "cart", "pay", "mail")
    }


def test_the_lists_and_the_app_agree_on_every_certificate_case(
    ports, client, make_user, make_team, make_app, token_client
):
    # The API's list and the dashboard's read rows, not App instances (berth.certs.selectors.apps_serving_https):
    # each case must come out as App.url says
    owner = make_user()
    team = make_team(owner=owner)
    cases = {
        "none": None,
        "pending": {"serial": "", "state": CertificateState.PENDING},
        "custom": {"hostnames": ["www.custom.test"]},
        "expired": {"days": -1},
        "served": {},
        "failing": {"state": CertificateState.FAILING},
    }
    apps = {}
    for name, case in cases.items():
        apps[name] = make_app(name, team=team, actor=owner)
        if case is not None:
            certificate(apps[name], **case)
    expected = {name: app.url for name, app in apps.items()}
    assert {name for name, url in expected.items() if url.startswith("https://")} == {"served", "failing"}
    listed = {a["name"]: a["url"] for a in token_client(owner).get("/api/v1/apps?limit=10").json()}
    assert listed == expected
    client.force_login(owner)
    page = client.get("/apps/").content.decode()
    for name, url in expected.items():
        assert f'<a href="{url}" rel="noopener">{url}</a>' in page, name
