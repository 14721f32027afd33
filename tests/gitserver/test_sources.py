"""The push webhook of an app that follows a repository elsewhere, below the worker: signatures in each sender's
format, what a payload means, and the answers of POST /hooks/git/<app> before anything is queued (the fetch and
deploy through the running platform: tests/e2e/test_sources_e2e.py)."""

import hashlib
import hmac
import json

import pytest
from berth.apps.models import App
from berth.builds.sources import PushEvent, push_event, signature_valid, source_set

SHA = "a" * 40


@pytest.fixture
def followed(make_app, settings, monkeypatch):
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")  # the URL is a local one
    app = make_app("shop")
    secret = source_set(app=app, url="http://127.0.0.1:9/shop.git", actor=None)
    return App.objects.get(pk=app.pk), secret


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_each_senders_signature_is_checked_and_a_wrong_one_refused(followed):
    app, secret = followed
    body = b'{"ref": "refs/heads/main"}'
    good = _sign(secret, body)
    assert signature_valid(app=app, headers={"x-hub-signature-256": f"sha256={good}"}, body=body)
    assert signature_valid(app=app, headers={"x-gitea-signature": good}, body=body)
    assert signature_valid(app=app, headers={"x-gogs-signature": good}, body=body)
    assert signature_valid(app=app, headers={"x-gitlab-token": secret}, body=body)
    assert not signature_valid(app=app, headers={"x-hub-signature-256": f"sha256={good}"}, body=body + b" ")
    assert not signature_valid(app=app, headers={"x-gitlab-token": "guess"}, body=body)
    assert not signature_valid(app=app, headers={}, body=body)


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        ({"ref": "refs/heads/main", "after": SHA}, PushEvent("refs/heads/main", SHA)),
        (
            {"ref": "refs/heads/main", "checkout_sha": SHA, "after": "b" * 40},
            PushEvent("refs/heads/main", SHA),
        ),
        ({"ref": "refs/tags/v1", "after": SHA}, None),
        ({"ref": "refs/heads/main", "after": "0" * 40}, None),  # a deleted branch
        ({"ref": "refs/heads/main", "after": "../../etc"}, None),
        ({"zen": "ping"}, None),
        (["not", "an", "object"], None),
    ],
)
def test_a_payload_is_a_push_of_a_branch_or_nothing(payload, event):
    assert push_event(json.dumps(payload).encode()) == event


def test_the_webhook_refuses_before_queuing_anything(followed, client, make_app):
    app, secret = followed
    body = json.dumps({"ref": "refs/heads/main", "after": SHA}).encode()

    def post(path: str, data: bytes, **headers):
        return client.generic("POST", path, data, content_type="application/json", **headers)

    assert post("/hooks/git/nobody", body).status_code == 404
    make_app("plain")  # follows nothing: as unknown as an app that does not exist
    assert post("/hooks/git/plain", body).status_code == 404
    unsigned = post(f"/hooks/git/{app.name}", body)
    assert unsigned.status_code == 401 and "signature" in unsigned.json()["detail"]
    other = json.dumps({"ref": "refs/heads/feature", "after": SHA}).encode()
    answer = post(f"/hooks/git/{app.name}", other, HTTP_X_HUB_SIGNATURE_256=f"sha256={_sign(secret, other)}")
    assert answer.status_code == 202 and "not shop's deploy branch" in answer.json()["detail"]
    big = b"x" * (1024 * 1024 + 1)
    assert post(f"/hooks/git/{app.name}", big).status_code == 413
    assert client.get(f"/hooks/git/{app.name}").status_code == 405


def test_a_source_url_must_be_https_and_public(make_app, monkeypatch):
    from django.core.exceptions import ValidationError

    monkeypatch.delenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", raising=False)
    app = make_app("shop")
    for url, reason in (
        ("http://example.org/x.git", "must be an https:// URL"),
        ("https://127.0.0.1/x.git", "private, loopback or reserved"),
        ("file:///etc/passwd", "must be an https:// URL"),
    ):
        with pytest.raises(ValidationError, match=reason):
            source_set(app=app, url=url, actor=None)
    assert App.objects.get(pk=app.pk).source_url == ""
