"""Services: release numbering under concurrency, conditional status moves, encryption at rest, key rotation."""

import os
import stat
import threading
from datetime import timedelta

import pytest
from berth.accounts.models import ApiToken
from berth.accounts.selectors import user_role
from berth.accounts.services import token_authenticate, token_create
from berth.apps.crypto import decrypt_text
from berth.apps.models import ConfigVar
from berth.apps.selectors import app_for_user, config_for_app
from berth.releases.models import ImmutableRelease, Release
from berth.releases.selectors import current_release
from berth.releases.services import config_update, release_create, release_set_status
from berth.releases.signals import release_created
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection, connections
from django.http import Http404
from django.utils import timezone


def _raw(sql: str, params=()) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_release_numbers_are_unique_and_gapless_under_concurrency(make_app):
    # PostgreSQL: row lock on the app; SQLite: its write lock, taken first (see apps.services.app_row_lock)
    app = make_app()
    threads_count, per_thread = 8, 5
    barrier = threading.Barrier(threads_count, timeout=30)
    errors = []

    def work():
        try:
            barrier.wait()
            for _ in range(per_thread):
                release_create(app=app, image="img", procfile={"web": "run"}, description="", actor=None)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    versions = sorted(Release.objects.filter(app=app).values_list("version", flat=True))
    assert versions == list(range(1, threads_count * per_thread + 1))


def test_release_set_status_moves_only_from_the_expected_status(make_app):
    release = release_create(app=make_app(), image="i", procfile={}, description="", actor=None)
    stale_copy = Release.objects.get(pk=release.pk)
    assert release_set_status(release=release, from_statuses=["pending"], to_status="built") is True
    assert release.status == "built"
    # another worker holding the old state loses
    assert (
        release_set_status(release=stale_copy, from_statuses=["pending"], to_status="failed", reason="x")
        is False
    )
    assert Release.objects.get(pk=release.pk).status == "built"
    assert stale_copy.status == "pending"


def test_release_set_status_refuses_unknown_status(make_app):
    release = release_create(app=make_app(), image="i", procfile={}, description="", actor=None)
    with pytest.raises(ValueError):
        release_set_status(release=release, from_statuses=["pending"], to_status="exploded")


def test_releases_are_immutable(make_app):
    release = release_create(app=make_app(), image="i", procfile={}, description="", actor=None)
    release.image = "other"
    with pytest.raises(ImmutableRelease):
        release.save()


def test_release_create_validates_status_and_procfile(make_app):
    app = make_app()
    with pytest.raises(ValidationError):
        release_create(app=app, image="i", procfile={}, description="", actor=None, status="nope")
    with pytest.raises(ValidationError):
        release_create(app=app, image="i", procfile={"Web Server": "x"}, description="", actor=None)
    with pytest.raises(ValidationError):
        release_create(app=app, image="i", procfile={"web": ""}, description="", actor=None)


def test_release_create_snapshots_config_and_adds_formation(make_app):
    app = make_app()
    config_update(app=app, changes={"A": "1"}, actor=None)
    release = release_create(
        app=app, image="i", procfile={"web": "serve", "worker": "work"}, description="", actor=None
    )
    assert release.version == 2 and release.config == {"A": "1"}
    assert dict(app.formation.values_list("process", "replicas")) == {"web": 1, "worker": 0}


def test_release_created_is_sent_after_commit(make_app, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, release, **kwargs):
        seen.append(release.version)

    release_created.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            release_create(app=make_app(), image="i", procfile={}, description="", actor=None)
    finally:
        release_created.disconnect(receiver)
    assert seen == [1]


def test_current_release_prefers_the_newest_live_one(make_app):
    app = make_app()
    assert current_release(app) is None
    first = release_create(app=app, image="a", procfile={}, description="", actor=None, status="live")
    release_create(app=app, image="b", procfile={}, description="", actor=None, status="failed")
    assert current_release(app) == first
    release_set_status(release=first, from_statuses=["live"], to_status="superseded")
    assert current_release(app).version == 2


def test_config_values_are_encrypted_at_rest(make_app):
    app = make_app()
    secret = "postgres://user:very-secret-password@db/x"
    config_update(app=app, changes={"DATABASE_URL": secret}, actor=None)
    raw_values = _raw("SELECT value_encrypted FROM apps_configvar")
    raw_snapshots = _raw("SELECT config_encrypted FROM releases_release")
    assert raw_values and raw_snapshots
    for raw in raw_values + raw_snapshots:
        assert "very-secret-password" not in raw
    assert config_for_app(app=app) == {"DATABASE_URL": secret}


def test_config_values_never_reach_the_logs_or_audit(make_app, caplog):
    caplog.set_level("DEBUG")
    app = make_app()
    config_update(app=app, changes={"TOKEN": "hunter2-secret"}, actor=None)
    assert "hunter2-secret" not in caplog.text
    assert "hunter2-secret" not in str(_raw("SELECT data FROM audit_auditevent"))


def test_key_rotation_reencrypts_everything_with_the_first_key(make_app, monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("BERTH_ENCRYPTION_KEY", old)
    app = make_app()
    config_update(app=app, changes={"A": "alpha", "B": "beta"}, actor=None)
    before = sorted(_raw("SELECT value_encrypted FROM apps_configvar"))

    monkeypatch.setenv("BERTH_ENCRYPTION_KEY", f"{new},{old}")
    assert config_for_app(app=app) == {"A": "alpha", "B": "beta"}  # old values still readable during rotation
    call_command("rotate_config_key", stdout=open(os.devnull, "w"))
    after = sorted(_raw("SELECT value_encrypted FROM apps_configvar"))
    assert set(after).isdisjoint(before)

    monkeypatch.setenv("BERTH_ENCRYPTION_KEY", new)  # the old key is gone now
    assert config_for_app(app=app) == {"A": "alpha", "B": "beta"}
    assert Release.objects.get(app=app).config == {"A": "alpha", "B": "beta"}
    monkeypatch.setenv("BERTH_ENCRYPTION_KEY", old)
    with pytest.raises(ImproperlyConfigured):
        decrypt_text(ConfigVar.objects.first().value_encrypted)


def test_without_a_key_setting_one_is_generated_once_in_berth_home(tmp_path, settings, monkeypatch):
    from berth.apps.crypto import encrypt_text

    monkeypatch.delenv("BERTH_ENCRYPTION_KEY", raising=False)
    settings.BERTH_HOME = tmp_path
    token = encrypt_text("x")
    key_file = tmp_path / "encryption_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    assert decrypt_text(token) == "x" and key_file.read_text() == content


def test_a_malformed_key_stops_with_a_message_naming_the_setting(monkeypatch):
    from berth.apps.crypto import encrypt_text

    monkeypatch.setenv("BERTH_ENCRYPTION_KEY", "not-a-fernet-key")
    with pytest.raises(ImproperlyConfigured, match="BERTH_ENCRYPTION_KEY"):
        encrypt_text("x")


def test_token_is_stored_hashed_and_touched_at_most_once_a_minute(make_user):
    user = make_user()
    token, clear = token_create(user=user, name="ci")
    assert clear.startswith("berth_") and len(clear) > 40
    assert clear not in str(list(ApiToken.objects.values_list("token_hash", "prefix", "name")))
    now = timezone.now()
    assert token_authenticate(clear=clear, now=now).last_used_at == now
    token_authenticate(clear=clear, now=now + timedelta(seconds=30))
    assert ApiToken.objects.get(pk=token.pk).last_used_at == now
    later = now + timedelta(seconds=61)
    token_authenticate(clear=clear, now=later)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == later


def test_tokens_of_inactive_users_do_not_authenticate(make_user):
    user = make_user()
    _, clear = token_create(user=user, name="ci")
    user.is_active = False
    user.save()
    assert token_authenticate(clear=clear) is None


def test_app_for_user_404s_outsiders_and_403s_low_roles(world):
    assert app_for_user(user=world.users["viewer"], name="demo", min_role="viewer") == world.app
    with pytest.raises(PermissionDenied, match="needs the member role"):
        app_for_user(user=world.users["viewer"], name="demo", min_role="member")
    with pytest.raises(Http404):
        app_for_user(user=world.users["outsider"], name="demo", min_role="viewer")
    with pytest.raises(Http404):
        app_for_user(user=world.users["owner"], name="missing", min_role="viewer")


def test_superusers_act_as_owners(world, make_user):
    root = make_user(is_superuser=True, is_staff=True)
    assert user_role(user=root, team=world.team) == "owner"
    assert user_role(user=world.users["outsider"], team=world.team) is None


def test_config_update_makes_a_pending_release_of_the_latest_image_and_procfile(make_app):
    app = make_app()
    release_create(
        app=app, image="img:1", procfile={"web": "serve"}, description="", actor=None, status="live"
    )
    release = config_update(app=app, changes={"A": "1", "B": "2"}, actor=None)
    assert (release.version, release.status, release.image) == (2, "pending", "img:1")
    assert release.procfile == {"web": "serve"} and release.config == {"A": "1", "B": "2"}
    assert release.description == "Set A, B config vars"
    assert config_update(app=app, changes={"A": None}, actor=None).description == "Unset A"
