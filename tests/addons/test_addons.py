"""Add-ons on the real engine: PostgreSQL and Redis servers as Swarm services, reached from one-off runs on the
team's network with the app's own config var; another team's network cannot reach them; rotation, destruction,
and an app's destruction that leaves the data.

The images are built once per machine (berth.addons.images skips a current one).
"""

import json
import secrets
import time

import pytest
from berth.addons import selectors, services
from berth.addons.models import Addon
from berth.apps.crypto import decrypt_text
from berth.apps.models import ConfigVar
from berth.apps.services import app_destroy
from berth.deploys.rollout import app_teardown
from berth.nodes.images import app_images_remove
from berth.releases.models import Release
from berth.runtime.addons import addon_image_ref, addon_service_exists, addon_volume_exists
from berth.runtime.oneoff import run_oneoff
from berth.runtime.swarm import team_network_remove

from tests.addons.conftest import TEST_TEAM_PREFIX, _docker, _remove_addons

pytestmark = pytest.mark.docker

PROVISION_FIGURES = "test-artifacts/addons-provision.json"


@pytest.fixture
def teams(addon_images, db, make_user, make_team, make_app):
    """Two teams, an app each (with a release, so config changes make releases); everything removed after."""
    owner, intruder = make_user(), make_user()
    mine = make_team(f"{TEST_TEAM_PREFIX}{secrets.token_hex(3)}", owner=owner)
    theirs = make_team(f"{TEST_TEAM_PREFIX}{secrets.token_hex(3)}", owner=intruder)
    app = make_app(f"adtapp{secrets.token_hex(3)}", team=mine, actor=owner)
    other_app = make_app(f"adtapp{secrets.token_hex(3)}", team=theirs, actor=intruder)
    for each in (app, other_app):
        Release.objects.create(app=each, version=1, image="demo:v1", procfile={"web": "true"})
    yield type(
        "Teams", (), {"owner": owner, "mine": mine, "theirs": theirs, "app": app, "other_app": other_app}
    )
    for addon in Addon.objects.filter(team__in=[mine, theirs]):
        try:
            services.addon_destroy(addon=addon, actor=None)
        except Exception:
            pass
    _remove_addons(f"{mine.name}-", f"{theirs.name}-")  # what a failed destroy left
    for team in (mine, theirs):
        team_network_remove(team=team.name)


def _config(app, key: str) -> str | None:
    row = ConfigVar.objects.filter(app=app, key=key).first()
    return decrypt_text(row.value_encrypted) if row else None


def _psql(addon, app, sql: str):
    return services.addon_run(addon=addon, app=app, args=["-v", "ON_ERROR_STOP=1", "-tAc", sql], actor=None)


def _record_figure(kind: str, seconds: float) -> None:
    try:
        with open(PROVISION_FIGURES) as f:
            figures = json.load(f)
    except (OSError, ValueError):
        figures = {}
    figures[kind] = round(seconds, 2)
    with open(PROVISION_FIGURES, "w") as f:
        json.dump(figures, f, indent=2)


def test_postgres_created_attached_used_from_the_team_network_and_not_from_another(teams):
    releases_before = Release.objects.filter(app=teams.app).count()
    started = time.monotonic()
    addon = services.addon_create(app=teams.app, kind="postgres", actor=teams.owner)
    _record_figure("postgres_s", time.monotonic() - started)

    url = _config(teams.app, "DATABASE_URL")
    assert (
        url and url.startswith("postgres://berth:") and f"@addon-{teams.mine.name}-{addon.name}:5432/" in url
    )
    assert Release.objects.filter(app=teams.app).count() == releases_before + 1  # attaching is a release

    written = _psql(
        addon, teams.app, "create table notes (body text); insert into notes values ('hello from berth')"
    )
    assert written.exit_code == 0, written.output
    read = _psql(addon, teams.app, "select body from notes")
    assert (read.exit_code, read.output.strip()) == (0, "hello from berth")
    # the image leaves the JIT out (berth.addons.images: 159 of its 409 MB): the server knows it has none
    jit = _psql(addon, teams.app, "select pg_jit_available()")
    assert (jit.exit_code, jit.output.strip()) == (0, "f")
    assert int(_docker("image", "inspect", "-f", "{{.Size}}", addon_image_ref("postgres"))) < 300_000_000

    status = selectors.addon_status(addon=addon)
    assert status["running"] and status["version"].startswith("15.")
    assert status["size_bytes"] > 1_000_000 and status["node"]

    # another team's container, with the very URL: the host name is not on its network; and the server's address
    # on this team's network, with the right password, reaches no PostgreSQL from there (bounded by the connect
    # timeout). The same command from this team's network is the control: it connects.
    container = _docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name=addon-{teams.mine.name}-{addon.name}"
    ).split()[0]
    address = _docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container
    ).split()[0]
    by_address = url.replace(f"@addon-{teams.mine.name}-{addon.name}:", f"@{address}:")
    command = (
        'psql "$STOLEN_URL" -tAc "select 41"; echo "by-name=$?"; '
        'PGCONNECT_TIMEOUT=5 psql "$BY_ADDRESS" -tAc "select 42"; echo "by-address=$?"'
    )

    def attempt(app, team) -> str:
        lines: list[str] = []
        result = run_oneoff(
            app=app.name,
            team=team.name,
            release=0,
            image="berth/addon-postgres:bookworm",
            command=command,
            env={"STOLEN_URL": url, "BY_ADDRESS": by_address},
            on_line=lines.append,
            timeout=60,
        )
        assert result.exit_code == 0 and not result.timed_out, lines
        return "\n".join(lines)

    started = time.monotonic()
    intruder = attempt(teams.other_app, teams.theirs)
    assert time.monotonic() - started < 30
    assert "by-name=2" in intruder and "by-address=2" in intruder, intruder
    assert "could not translate host name" in intruder
    assert "41" not in intruder.split() and "42" not in intruder.split()
    own = attempt(teams.app, teams.mine)
    assert "41" in own.split() and "42" in own.split(), own


def test_redis_created_attached_and_used_from_the_team_network(teams):
    started = time.monotonic()
    addon = services.addon_create(app=teams.app, kind="redis", as_name="cache", actor=teams.owner)
    _record_figure("redis_s", time.monotonic() - started)
    url = _config(teams.app, "CACHE_URL")
    assert url and url.startswith("redis://default:") and _config(teams.app, "REDIS_URL") is None

    assert (
        services.addon_run(addon=addon, app=teams.app, args=["set", "greeting", "hi"], actor=None).output
        == "OK"
    )
    got = services.addon_run(addon=addon, app=teams.app, args=["get", "greeting"], actor=None)
    assert (got.exit_code, got.output.strip()) == (0, "hi")
    status = selectors.addon_status(addon=addon)
    assert status["running"] and status["version"].startswith("5:7.")


def test_shared_between_two_apps_then_rotated_old_password_refused(teams, make_app):
    second = make_app(f"adtapp{secrets.token_hex(3)}", team=teams.mine, actor=teams.owner)
    Release.objects.create(app=second, version=1, image="demo:v1", procfile={"web": "true"})
    addon = services.addon_create(app=teams.app, kind="postgres", actor=teams.owner)
    services.addon_attach(addon=addon, app=second, as_name="shared", actor=teams.owner)
    old_url = _config(second, "SHARED_URL")
    assert old_url == _config(teams.app, "DATABASE_URL")

    with pytest.raises(Exception, match="not found|no add-on"):
        services.addon_attach(addon=addon, app=teams.other_app, actor=teams.owner)  # another team's app

    seconds = services.addon_credentials_rotate(addon=addon, actor=teams.owner)
    new_url = _config(second, "SHARED_URL")
    assert new_url != old_url and new_url == _config(teams.app, "DATABASE_URL")
    assert _psql(addon, second, "select 'new works'").output.strip() == "new works"
    stale = run_oneoff(
        app=second.name,
        team=teams.mine.name,
        release=0,
        image="berth/addon-postgres:bookworm",
        command='psql "$OLD" -tAc "select 1"',
        env={"OLD": old_url},
        on_line=(lines := []).append,
        timeout=60,
    )
    assert stale.exit_code != 0 and "password authentication failed" in "\n".join(lines)
    assert seconds < 120

    services.addon_detach(addon=addon, app=second, actor=teams.owner)
    assert _config(second, "SHARED_URL") is None and _config(teams.app, "DATABASE_URL") == new_url


def test_app_destroy_keeps_the_volume_and_addon_destroy_removes_it(
    teams, router, django_capture_on_commit_callbacks
):
    addon = services.addon_create(app=teams.app, kind="redis", actor=teams.owner)
    spec = services.addon_spec(addon)
    assert (
        services.addon_run(addon=addon, app=teams.app, args=["set", "kept", "1"], actor=None).output == "OK"
    )

    name = teams.app.name
    with django_capture_on_commit_callbacks(execute=True):
        app_destroy(app=teams.app, actor=teams.owner)
    app_teardown(name=name)  # what the worker runs on app_destroyed: the app's services and images go
    app_images_remove(name=name)
    addon.refresh_from_db()
    assert addon_service_exists(spec) and addon_volume_exists(spec)
    assert not addon.attachments.exists()

    services.addon_destroy(addon=addon, actor=teams.owner)
    assert not addon_service_exists(spec) and not addon_volume_exists(spec)
    assert not Addon.objects.filter(pk=addon.pk).exists()
