"""`manage.py backup` and `manage.py restore` as an operator runs them (fresh interpreters on the test's database and
BERTH_HOME): everything comes back after a wipe, a damaged archive and a non-empty target are refused before
anything changes, a missing or full output folder is refused in one line."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from berth.accounts.models import ApiToken, Membership, Team
from berth.accounts.services import token_create
from berth.apps.models import App
from berth.builds.repos import repo_path
from berth.releases.models import Release, ReleaseStatus
from berth.releases.services import config_update, release_create, release_set_status
from django.core.management import call_command
from django.db import connection

from tests.conftest import manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _schema_back():
    """A restore that failed after the test wiped the database leaves no tables: migrated again, so that the
    next test (and pytest-django's flush) find them."""
    yield
    connection.close()
    if App._meta.db_table not in connection.introspection.table_names():
        call_command("migrate", verbosity=0)


@pytest.fixture
def home(tmp_path, settings):
    """This test's BERTH_HOME, shared with the manage.py processes (the config encryption key lives in it)."""
    path = tmp_path / "home"
    path.mkdir()
    settings.BERTH_HOME = path
    return path


@pytest.fixture
def env(home, tmp_path):
    """The environment of the operator's manage.py: this test's database and BERTH_HOME, no Swarm needed (the
    in-memory scheduler: nothing runs, so a live release is one to redeploy)."""
    if connection.vendor != "postgresql":
        # the tests' SQLite database lives in this process only; a SQLite installation has its own test below
        pytest.skip("the operator's manage.py shares this test's database: PostgreSQL only")
    db = connection.settings_dict
    router = tmp_path / "router"
    router.mkdir()
    (router / "slots.json").write_text('{"apps": {}}')
    return {
        "BERTH_HOME": str(home),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BERTH_ROUTER_DIR": str(router),
        "BERTH_SCHEDULER": "memory",
        "BERTH_REGISTRY": "",
    }


@pytest.fixture
def installation(home, make_user, make_team, make_app):
    """Two teams, three apps with releases and encrypted config vars, tokens and a git repository with a commit."""
    owner = make_user("cp-owner")
    other = make_user("cp-other")
    team = make_team("cp-team", owner=owner)
    make_team("cp-other-team", owner=other)
    apps = [make_app(f"cp-app-{n}", team=team, actor=owner) for n in range(3)]
    for n, app in enumerate(apps):
        config_update(
            app=app, changes={"SECRET": f"s3cret-{n}", "DATABASE_URL": f"postgres://x/{n}"}, actor=owner
        )
        release = release_create(
            app=app,
            image=f"cp-image-{n}:v1",
            procfile={"web": "python app.py"},
            description="deploy",
            actor=owner,
        )
        release_set_status(
            release=release, from_statuses=[ReleaseStatus.PENDING], to_status=ReleaseStatus.FAILED
        )
    token_create(user=owner, name="laptop")
    token_create(user=other, name="ci")
    _git_repo_with_commit(repo_path(app_name=apps[0].name), home)
    return apps


def _git_repo_with_commit(bare: Path, scratch: Path) -> None:
    work = scratch.parent / "work"
    for args in (
        ["init", "-q", "--bare", str(bare)],
        ["init", "-q", "-b", "main", str(work)],
        [
            "-C",
            str(work),
            "-c",
            "user.email=a@b.c",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "one",
        ],
        ["-C", str(work), "push", "-q", str(bare), "main"],
    ):
        subprocess.run(["git", *args], check=True, capture_output=True, timeout=30)


def _state() -> dict:
    """What must come back identical: apps, releases with their decrypted config, teams, members, tokens."""
    return {
        "apps": sorted(App.objects.values_list("name", "team__name")),
        "releases": sorted(
            (
                r.app.name,
                r.version,
                r.image,
                r.status,
                tuple(sorted(r.config.items())),
                json.dumps(r.procfile),
            )
            for r in Release.objects.select_related("app")
        ),
        "teams": sorted(Team.objects.values_list("name", flat=True)),
        "members": sorted(Membership.objects.values_list("team__name", "user__username", "role")),
        "tokens": sorted(ApiToken.objects.values_list("user__username", "name", "token_hash")),
    }


def _refs(repo: Path) -> str:
    result = subprocess.run(["git", "-C", str(repo), "show-ref"], capture_output=True, text=True, timeout=30)
    return result.stdout


def _wipe_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    connection.close()


def _wipe_home(home: Path) -> None:
    for entry in home.iterdir():
        subprocess.run(["rm", "-rf", str(entry)], check=True, timeout=30)


def _backup(env: dict, output: Path) -> subprocess.CompletedProcess:
    result = manage("backup", "--output", str(output), env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_restore_after_a_wipe_brings_back_apps_releases_config_teams_tokens_and_repositories(
    installation, env, home, tmp_path
):
    before = _state()
    repo = repo_path(app_name=installation[0].name)
    refs = _refs(repo)
    assert "refs/heads/main" in refs
    key = (home / "encryption_key").read_text()
    archive = tmp_path / "berth.tar.gz"
    result = _backup(env, archive)
    assert "3 apps" in result.stdout and "2 teams" in result.stdout, result.stdout
    assert oct(archive.stat().st_mode & 0o777) == "0o600"

    _wipe_database()
    _wipe_home(home)
    result = manage("restore", str(archive), "--yes", env=env)

    # the live releases were none (all failed): nothing to redeploy, a clean exit
    assert result.returncode == 0, result.stdout + result.stderr
    assert "archive checked" in result.stdout
    assert "3 apps, 0 services running, re-adopted" in result.stdout
    assert (home / "encryption_key").read_text() == key
    assert _state() == before  # config values decrypt to the same clear text: the key came back with them
    assert _refs(repo) == refs
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True, timeout=60
    )
    assert fsck.returncode == 0, fsck.stderr


def test_a_live_release_whose_services_are_gone_and_whose_image_is_nowhere_is_named(
    installation, env, home, tmp_path
):
    app = installation[1]
    release = Release.objects.filter(app=app).order_by("-version").first()
    Release.objects.filter(pk=release.pk).update(status=ReleaseStatus.LIVE, image="cp-no-such-image:v1")
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)
    _wipe_database()
    _wipe_home(home)

    result = manage("restore", str(archive), "--yes", env=env)

    assert result.returncode != 0
    assert (
        f"could not redeploy {app.name} v{release.version}: image cp-no-such-image:v1 is neither"
        in result.stdout
    )
    assert "1 release(s) could not be redeployed" in result.stderr
    assert App.objects.count() == 3  # the rest was restored all the same


def test_restore_refuses_a_target_holding_data_without_force(installation, env, tmp_path):
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)

    result = manage("restore", str(archive), "--yes", env=env)

    assert result.returncode != 0
    line = result.stderr.strip()
    assert "the target is not empty: the database holds 3 apps, 2 teams, 6 releases" in line
    assert "1 git repositories" in line and "--force" in line
    assert len(line.splitlines()) == 1


def _tampered(archive: Path, out: Path, member_prefix: str) -> None:
    """The archive with one member's bytes changed and its manifest kept: what a checksum must catch."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        changed = False
        for info in source.getmembers():
            data = source.extractfile(info).read() if info.isfile() else None
            if data is not None and not changed and info.name.startswith(member_prefix) and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                changed = True
            target.addfile(info, io.BytesIO(data) if data is not None else None)
    assert changed


@pytest.mark.parametrize("member", ["database.pgdump", "home/repos/", "home/encryption_key"])
def test_a_tampered_archive_is_refused_before_anything_changes(installation, env, home, tmp_path, member):
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)
    tampered = tmp_path / "tampered.tar.gz"
    _tampered(archive, tampered, member)
    # the installation moves on after the backup: a restore would take this back
    App.objects.filter(name=installation[2].name).delete()
    before = _state()
    key = (home / "encryption_key").read_text()
    repos = sorted(p.name for p in (home / "repos").iterdir())

    result = manage("restore", str(tampered), "--yes", "--force", env=env)

    assert result.returncode != 0
    assert "the archive is damaged: 1 member(s) do not match the manifest's checksums" in result.stderr
    assert member.rstrip("/") in result.stderr
    assert "nothing was restored" in result.stderr
    assert _state() == before
    assert (home / "encryption_key").read_text() == key
    assert sorted(p.name for p in (home / "repos").iterdir()) == repos
    assert not [p for p in home.iterdir() if p.name.startswith(".restore-")]  # its staging is cleaned up


def test_a_truncated_archive_is_refused(installation, env, tmp_path):
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = _state()

    result = manage("restore", str(cut), "--yes", "--force", env=env)

    assert result.returncode != 0
    assert "the archive is damaged" in result.stderr and "nothing was restored" in result.stderr
    assert _state() == before


def test_the_archive_has_a_manifest_with_checksums_counts_and_version(installation, env, tmp_path):
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)

    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert names[-1] == "manifest.json"
        for name, member in manifest["members"].items():
            if member["type"] == "file":
                assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == member["sha256"]
    assert manifest["database"]["kind"] == "postgresql"
    assert manifest["counts"] == {"apps": 3, "releases": 6, "teams": 2, "tokens": 2}
    assert manifest["berth_version"] not in ("", "unknown")
    assert "home/encryption_key" in names and "router/slots.json" in names
    assert any(n.startswith(f"home/repos/{installation[0].name}.git/") for n in names)
    assert gzip.open(archive).read(1)  # a plain tar.gz, readable by tar itself


def test_backup_refuses_a_missing_or_full_output_folder(installation, env, tmp_path):
    missing = manage("backup", "--output", str(tmp_path / "nowhere" / "b.tar.gz"), env=env)
    full = manage("backup", "--output", "/dev/full", env=env)

    assert missing.returncode != 0
    assert missing.stderr.strip() == f"CommandError: the output folder {tmp_path / 'nowhere'} does not exist"
    assert full.returncode != 0
    assert (
        full.stderr.strip()
        == "CommandError: no space left on the device of /dev/full: the backup was not written"
    )
    assert not os.path.exists(tmp_path / "nowhere")


SQLITE_SEED = """
from django.contrib.auth import get_user_model
from berth.accounts.services import team_create
from berth.apps.services import app_create
from berth.releases.services import config_update
user = get_user_model().objects.create_user(username="sq", password="pw-123456")
team = team_create(name="sq-team", actor=user)
app = app_create(team=team, name="sq-app", actor=user)
config_update(app=app, changes={"SECRET": "sq-s3cret"}, actor=user)
"""
SQLITE_READ = """
from berth.releases.models import Release
print(sorted((r.app.name, r.version, r.config["SECRET"]) for r in Release.objects.all()))
"""


def test_a_sqlite_installation_is_backed_up_with_the_online_backup_and_restored(tmp_path):
    home = tmp_path / "sqlite-home"
    env = {
        "BERTH_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'berth.sqlite3'}",
        "BERTH_ROUTER_DIR": str(tmp_path / "sqlite-router"),
        "BERTH_SCHEDULER": "memory",
        "BERTH_REGISTRY": "",
    }
    assert manage("migrate", "-v0", env=env).returncode == 0
    assert manage("shell", "-c", SQLITE_SEED, env=env).returncode == 0
    before = manage("shell", "-c", SQLITE_READ, env=env).stdout
    assert "sq-s3cret" in before
    archive = tmp_path / "sqlite.tar.gz"
    backup = manage("backup", "--output", str(archive), env=env)
    assert "database sqlite" in backup.stdout, backup.stderr
    _wipe_home(home)

    result = manage("restore", str(archive), "--yes", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "database restored (sqlite): 1 apps" in result.stdout
    assert manage("shell", "-c", SQLITE_READ, env=env).stdout == before


def _registry(tmp_path: Path) -> Path:
    registry = tmp_path / "registry"
    blobs = registry / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / "ab"
    blobs.mkdir(parents=True)
    (blobs / "data").write_bytes(b"layer bytes")
    for name, text in (
        ("password", "the-password"),
        ("htpasswd", "berth:$2b$x"),
        ("config.yml", "version: 0.1\n"),
    ):
        (registry / name).write_text(text)
    return registry


@pytest.mark.parametrize("with_blobs", [False, True])
def test_registry_credentials_come_back_and_its_blobs_only_when_asked(
    installation, env, home, tmp_path, with_blobs
):
    registry = _registry(tmp_path)
    env = {**env, "BERTH_REGISTRY_DIR": str(registry)}
    archive = tmp_path / "berth.tar.gz"
    result = manage(
        "backup", "--output", str(archive), *(["--with-registry-blobs"] if with_blobs else []), env=env
    )
    assert result.returncode == 0, result.stderr
    _wipe_database()
    _wipe_home(home)
    subprocess.run(["rm", "-rf", str(registry)], check=True, timeout=30)

    result = manage("restore", str(archive), "--yes", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (registry / "password").read_text() == "the-password"
    assert (registry / "htpasswd").read_text() == "berth:$2b$x"
    blob = registry / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / "ab" / "data"
    assert blob.exists() == with_blobs
    assert ("registry blobs restored" in result.stdout) == with_blobs


def test_an_unreachable_database_is_one_line_not_a_traceback(env, tmp_path):
    env = {**env, "DATABASE_URL": "postgres://postgres@127.0.0.1:54329/berth_cp_no_such_database"}

    backup = manage("backup", "--output", str(tmp_path / "b.tar.gz"), env=env)
    restore = manage("restore", str(tmp_path / "b.tar.gz"), "--yes", env=env)

    for result in (backup, restore):
        assert result.returncode != 0
        line = result.stderr.strip()
        assert line.startswith("CommandError: database error: ") and "berth_cp_no_such_database" in line, line
        assert len(line.splitlines()) == 1


def test_a_push_in_flight_its_quarantined_objects_is_left_out_of_the_archive(installation, env, tmp_path):
    """git keeps a push's objects in objects/tmp_objdir-incoming-* until its hooks accept it: no ref points there,
    and its files come and go while a backup reads them (seen: a scheduled backup failing its verification)."""
    repo = repo_path(app_name=installation[0].name)
    quarantine = repo / "objects" / "tmp_objdir-incoming-Ab12Cd" / "2e"
    quarantine.mkdir(parents=True)
    (quarantine / "35818f6a").write_bytes(b"an object of a push still deciding")
    archive = tmp_path / "berth.tar.gz"
    _backup(env, archive)

    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
    assert not [name for name in names if "tmp_objdir" in name]
    assert any(name.startswith(f"home/repos/{installation[0].name}.git/objects/") for name in names)
