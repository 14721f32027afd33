"""The control plane's backup archive, its restore and its scheduled, verified copies.

An archive is one tar.gz, written as a stream: the database (`pg_dump -Fc` in the snapshot its row counts were taken
in, or SQLite's online backup), BERTH_HOME's keys and installation id, every git repository, the router's state
files, the registry's credentials (and, when asked, its blobs), then `manifest.json` last, with the sha256 of every
member, the database's kind and its rows per table. A restore unpacks the whole archive into a staging folder
first and checks every member against the manifest: a damaged archive is refused before the database or any file
of the installation is touched. Then the database, then the files, then what Swarm still runs is re-adopted (the
watcher routes it once it runs) and a live release whose services are gone is started again from its image.
"""

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from berth.accounts.models import ApiToken, Team
from berth.addons.store import BackupStore, BackupStoreError, FolderStore, backup_store
from berth.apps.models import App
from berth.audit.services import audit_record
from berth.core.redis import redis_client
from berth.deploys.rollout import app_reconcile, process_specs, process_wait_ready
from berth.deploys.selectors import live_release
from berth.releases.models import Release
from berth.runtime.pull import image_inspect
from berth.runtime.registry import registry_enabled
from berth.runtime.scheduler import get_scheduler

logger = logging.getLogger(__name__)

ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
PG_DUMP = "database.pgdump"
SQLITE_DUMP = "database.sqlite3"
GIT_QUARANTINE_PREFIXES = ("tmp_objdir-", "incoming-")
# what BERTH_HOME holds that a restore needs; the rest (static files, the CLI bundle, build trees, locks, the beat
# schedule) is made again by Berth itself
HOME_SECRETS = ("secret_key", "encryption_key", "installation_id")
REGISTRY_CREDENTIALS = ("password", "htpasswd", "config.yml")
CHUNK = 1024 * 1024
REDEPLOY_TIMEOUT = 120.0
# one query counting the rows of every table of the public schema (PostgreSQL), in whatever snapshot it runs
PG_COUNTS = """
SELECT table_name,
       (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name),
                                             false, true, '')))[1]::text::bigint
FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
"""


class BackupError(Exception):
    """A backup could not be written; the message says why, in one line."""


class RestoreError(Exception):
    """A restore was refused or failed; the message says why, in one line. Nothing was changed when it is raised
    before the database restore starts (a damaged archive, a non-empty target)."""


# --- the database ------------------------------------------------------------------------------------------------


def database_kind() -> str:
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine == "django.db.backends.postgresql":
        return "postgresql"
    if engine == "django.db.backends.sqlite3":
        return "sqlite"
    raise BackupError(f"cannot back up a {engine} database (PostgreSQL or SQLite only)")


def _pg_env(database: str | None = None) -> dict[str, str]:
    """libpq's environment for the pg_* tools: the password never on a command line."""
    db = settings.DATABASES["default"]
    env = {**os.environ, "PGDATABASE": database or db["NAME"]}
    for key, name in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if db.get(key):
            env[name] = str(db[key])
    return env


def _pg_conninfo(database: str) -> str:
    env = _pg_env(database)
    parts = {
        "dbname": database,
        "host": env.get("PGHOST"),
        "port": env.get("PGPORT"),
        "user": env.get("PGUSER"),
    }
    parts["password"] = env.get("PGPASSWORD")
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


def _run(command: list[str], *, env: dict | None = None, what: str) -> None:
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=6 * 3600)
    except FileNotFoundError:
        raise BackupError(
            f"{what} failed: {command[0]} is not installed (apt install postgresql-client)"
        ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")


def _sqlite_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def database_dump(path: Path) -> dict[str, int]:
    """Dump the database to `path`; returns its rows per table, counted in the very state the dump holds
    (PostgreSQL: pg_dump runs in the snapshot exported by the transaction that counts; SQLite: the copy is counted)."""
    if database_kind() == "sqlite":
        live = sqlite3.connect(settings.DATABASES["default"]["NAME"])
        copy = sqlite3.connect(path)
        try:
            live.backup(copy)  # SQLite's online backup: a consistent copy while others write
        finally:
            copy.close()
            live.close()
        return _sqlite_counts(path)
    with transaction.atomic(), connection.cursor() as cursor:
        # the first statement of the transaction: its snapshot is taken at the next query and exported to pg_dump
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        cursor.execute(PG_COUNTS)
        counts = {name: int(count) for name, count in cursor.fetchall()}
        _run(
            ["pg_dump", "-Fc", "--no-owner", "--no-privileges", f"--snapshot={snapshot}", "-f", str(path)],
            env=_pg_env(),
            what="pg_dump",
        )
    return counts


def _database_bytes() -> int:
    if database_kind() == "sqlite":
        return Path(settings.DATABASES["default"]["NAME"]).stat().st_size
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def dump_counts_by_restoring(dump: Path, kind: str) -> dict[str, int]:
    """Restore `dump` into a throwaway database (PostgreSQL: a temporary database on the same server, dropped
    after; SQLite: the dump is itself a database file) and count its rows per table."""
    if kind == "sqlite":
        return _sqlite_counts(dump)
    name = f"berth_verify_{secrets.token_hex(6)}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        _run(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", name, str(dump)],
            env=_pg_env(name),
            what="restoring the dump into a throwaway database",
        )
        with psycopg.connect(_pg_conninfo(name)) as db:
            return {table: int(count) for table, count in db.execute(PG_COUNTS).fetchall()}
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_restore(dump: Path, kind: str) -> None:
    """Replace the database's content by the dump's, all or nothing."""
    connection.close()  # this process's own connection must not hold a table the restore drops
    if kind == "sqlite":
        target = settings.DATABASES["default"]["NAME"]
        source = sqlite3.connect(dump)
        live = sqlite3.connect(target, timeout=30)
        try:
            source.backup(live)  # page by page under SQLite's lock: readers never see half of it
        finally:
            live.close()
            source.close()
        return
    env = {**_pg_env(), "PGOPTIONS": "-c lock_timeout=60s"}
    command = [
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
    ]
    try:
        _run([*command, "--exit-on-error", "-d", env["PGDATABASE"], str(dump)], env=env, what="pg_restore")
    except BackupError as exc:
        raise RestoreError(
            f"{exc} (the database was left as it was: the restore runs in one transaction)"
        ) from exc


# --- what goes into the archive -------------------------------------------------------------------------------


@dataclass
class Source:
    """One folder of the installation and the name its files take in the archive."""

    prefix: str
    root: Path
    names: tuple[str, ...] | None = None  # only these entries of `root` (None: all of it)
    skip: tuple[str, ...] = ()  # entries of `root` left out


def _sources(*, with_registry_blobs: bool) -> list[Source]:
    home = Path(settings.BERTH_HOME)
    sources = [Source("home", home, names=(*HOME_SECRETS, "repos"))]
    router = Path(settings.BERTH_ROUTER_DIR)
    # the running router's sockets, pid and lock are its own, made again when it starts
    sources.append(Source("router", router, skip=("admin.sock", "master.sock", "router.lock", "haproxy.pid")))
    registry = Path(settings.BERTH_REGISTRY_DIR)
    sources.append(
        Source("registry", registry, names=REGISTRY_CREDENTIALS + (("data",) if with_registry_blobs else ()))
    )
    return sources


def _walk(source: Source) -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every directory and regular file of the source, parents first, sorted."""
    if not source.root.is_dir():
        return
    entries = (
        sorted(source.root.iterdir()) if source.names is None else [source.root / n for n in source.names]
    )
    for entry in entries:
        if entry.name in source.skip or not entry.exists() or entry.is_symlink():
            continue
        if entry.is_file():
            yield f"{source.prefix}/{entry.name}", entry
        elif entry.is_dir():
            yield f"{source.prefix}/{entry.name}", entry
            for root, dirs, files in os.walk(entry):
                # a git repository's refs (HEAD, packed-refs, refs/) are read before its objects: a push landing
                # meanwhile only adds objects, so every ref archived points at objects that are archived too
                dirs.sort(key=lambda name: (name == "objects", name))
                # git's quarantine of a push in flight (objects/tmp_objdir-incoming-*): not accepted yet, no ref
                # points into it, and its files come and go while they are read
                dirs[:] = [name for name in dirs if not name.startswith(GIT_QUARANTINE_PREFIXES)]
                for name in [*dirs, *sorted(files)]:
                    path = Path(root) / name
                    # sockets, fifos and links have no place in a backup (a bare repository holds none)
                    if path.is_symlink() or not (path.is_dir() or path.is_file()):
                        continue
                    yield f"{source.prefix}/{path.relative_to(source.root).as_posix()}", path


class _HashingReader:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


def _tarinfo(archive: tarfile.TarFile, arcname: str, **source) -> tarfile.TarInfo:
    info = archive.gettarinfo(arcname=arcname, **source)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # gettarinfo keeps the file type bits; the archive (and a reader) holds only the permissions
    info.mode &= 0o7777
    return info


def _add_file(archive: tarfile.TarFile, name: str, path: Path, members: dict) -> None:
    if path.is_dir():
        info = _tarinfo(archive, name, name=str(path))
        archive.addfile(info)
        members[name] = {"type": "dir", "mode": info.mode}
        return
    with open(path, "rb") as raw:
        # sized from the open file: one the router or git replaces meanwhile (a rename) is read whole, as it was
        info = _tarinfo(archive, name, fileobj=raw)
        reader = _HashingReader(raw)
        archive.addfile(info, reader)
    members[name] = {
        "type": "file",
        "mode": info.mode,
        "size": info.size,
        "sha256": reader.digest.hexdigest(),
    }


def berth_version() -> str:
    """`git describe` of the checkout Berth runs from ("unknown" outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(settings.REPO_DIR), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown"


def backup_size_estimate(*, with_registry_blobs: bool = False) -> int:
    """Bytes the archive's members take uncompressed: what the output's folder must have free, at most."""
    total = _database_bytes()
    for source in _sources(with_registry_blobs=with_registry_blobs):
        total += sum(path.stat().st_size for _, path in _walk(source) if path.is_file())
    return total


def output_check(folder: Path, *, needed: int) -> None:
    """Refuse, in one line, an output folder that is missing or has too little room."""
    if not folder.is_dir():
        raise BackupError(f"the output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BackupError(f"the output folder {folder} is not writable")
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BackupError(
            f"the output folder {folder} has {free // 2**20} MB free; the backup needs up to {needed // 2**20 + 1} MB"
        )


def backup_write(out: BinaryIO, *, with_registry_blobs: bool = False, scratch: Path | None = None) -> dict:
    """Stream the archive into `out`; returns its manifest. `scratch` holds the database dump meanwhile."""
    kind = database_kind()
    members: dict[str, dict] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-backup-", dir=scratch) as tmp:
        dump = Path(tmp) / (PG_DUMP if kind == "postgresql" else SQLITE_DUMP)
        counts = database_dump(dump)
        with tarfile.open(fileobj=out, mode="w|gz") as archive:
            _add_file(archive, dump.name, dump, members)
            for source in _sources(with_registry_blobs=with_registry_blobs):
                for name, path in _walk(source):
                    _add_file(archive, name, path, members)
            manifest = {
                "format": ARCHIVE_FORMAT,
                "berth_version": berth_version(),
                "created_at": timezone.now().isoformat(),
                "installation_id": settings.BERTH_INSTALLATION_ID,
                "database": {"kind": kind, "member": dump.name, "rows": counts},
                "counts": _summary(counts),
                "registry_blobs": with_registry_blobs,
                # a key or id given in the environment is not in BERTH_HOME: the operator keeps it
                "from_environment": [
                    name
                    for name, variable in (
                        ("secret_key", "BERTH_SECRET_KEY"),
                        ("encryption_key", "BERTH_ENCRYPTION_KEY"),
                        ("installation_id", "BERTH_INSTALLATION_ID"),
                    )
                    if os.environ.get(variable)
                ],
                "members": members,
            }
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(body), 0o600, int(time.time())
            archive.addfile(info, _BytesReader(body))
    manifest["seconds"] = round(time.monotonic() - started, 2)
    return manifest


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def _summary(rows: dict[str, int]) -> dict[str, int]:
    return {
        "apps": rows.get(App._meta.db_table, 0),
        "releases": rows.get(Release._meta.db_table, 0),
        "teams": rows.get(Team._meta.db_table, 0),
        "tokens": rows.get(ApiToken._meta.db_table, 0),
    }


def backup_to_file(output: Path, *, with_registry_blobs: bool = False) -> dict:
    """Write the archive to `output` (a regular file appears only once complete, mode 0600); BackupError when
    the folder is missing or full, with nothing left behind."""
    if output.exists() and not output.is_file():
        target, partial = output, None  # a device or a pipe (/dev/stdout): written as is
    else:
        output_check(output.parent, needed=backup_size_estimate(with_registry_blobs=with_registry_blobs))
        target = partial = output.with_name(f".{output.name}.partial")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            # the dump waits beside the archive (a folder checked for room), not in a small /tmp
            scratch = output.parent if partial is not None else None
            manifest = backup_write(out, with_registry_blobs=with_registry_blobs, scratch=scratch)
            if partial is not None:
                out.flush()
                os.fsync(out.fileno())
        if partial is not None:
            partial.rename(output)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BackupError(f"no space left on the device of {output}: the backup was not written") from exc
        raise BackupError(f"could not write {output}: {exc.strerror or exc}") from exc
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    manifest["size"] = output.stat().st_size if output.is_file() else None
    return manifest


# --- reading an archive ---------------------------------------------------------------------------------------


def _member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RestoreError(f"the archive is damaged or not Berth's: member {name!r} leaves its folder")
    if path.parts[0] not in ("home", "router", "registry") and name not in (PG_DUMP, SQLITE_DUMP, MANIFEST):
        raise RestoreError(f"the archive is damaged or not Berth's: unexpected member {name!r}")
    return path


def archive_unpack(
    stream: BinaryIO, staging: Path, *, keep: Callable[[str], bool] = lambda name: True
) -> dict:
    """Unpack the archive into `staging` (only the members `keep` names; every member is hashed), check every
    member against the manifest and return it. RestoreError when anything differs: a damaged archive."""
    seen: dict[str, dict] = {}
    manifest = None
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            for info in archive:
                if info.name == MANIFEST:
                    manifest = json.loads(archive.extractfile(info).read())
                    continue
                path = _member_path(info.name)
                if info.isdir():
                    seen[info.name] = {"type": "dir", "mode": info.mode}
                    if keep(info.name):
                        (staging / path).mkdir(parents=True, exist_ok=True)
                    continue
                if not info.isfile():
                    raise RestoreError(f"the archive is damaged or not Berth's: {info.name} is not a file")
                digest = hashlib.sha256()
                source = archive.extractfile(info)
                target = None
                if keep(info.name):
                    (staging / path).parent.mkdir(parents=True, exist_ok=True)
                    target = open(staging / path, "wb")  # noqa: SIM115 (closed below)
                try:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        if target is not None:
                            target.write(chunk)
                finally:
                    if target is not None:
                        target.close()
                        os.chmod(staging / path, info.mode & 0o777)
                seen[info.name] = {
                    "type": "file",
                    "mode": info.mode,
                    "size": info.size,
                    "sha256": digest.hexdigest(),
                }
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise RestoreError(f"no space left to unpack the archive into {staging}") from exc
        raise RestoreError(
            f"the archive is damaged (not a complete tar.gz: {exc}); nothing was restored"
        ) from exc
    if manifest is None:
        raise RestoreError("the archive is damaged or not Berth's: it has no manifest; nothing was restored")
    expected = manifest.get("members") or {}
    damaged = sorted(name for name in set(expected) | set(seen) if expected.get(name) != seen.get(name))
    if damaged:
        raise RestoreError(
            f"the archive is damaged: {len(damaged)} member(s) do not match the manifest's checksums "
            f"({', '.join(damaged[:3])}{'…' if len(damaged) > 3 else ''}); nothing was restored"
        )
    return manifest


def compare_counts(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """The tables whose rows differ, as lines."""
    return [
        f"{table}: {found.get(table)} rows, {count} at backup time"
        for table, count in sorted(expected.items())
        if found.get(table) != count
    ]


# --- restore ----------------------------------------------------------------------------------------------------


def target_holds() -> list[str]:
    """What a restore would overwrite: apps, teams or releases in the database, git repositories in BERTH_HOME.
    A freshly installed Berth (migrated, its admin user only) holds nothing."""
    held = []
    tables = set(connection.introspection.table_names())
    if App._meta.db_table in tables:
        counts = {
            "apps": App.objects.count(),
            "teams": Team.objects.count(),
            "releases": Release.objects.count(),
        }
        if any(counts.values()):
            held.append("the database holds " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    repos = Path(settings.BERTH_HOME) / "repos"
    if repos.is_dir() and (count := sum(1 for _ in repos.glob("*.git"))):
        held.append(f"{repos} holds {count} git repositories")
    return held


@dataclass
class RestoreReport:
    manifest: dict
    apps: int = 0
    services_running: int = 0
    readopted: list[str] = field(default_factory=list)
    redeployed: list[str] = field(default_factory=list)
    not_redeployed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def restore(
    stream: BinaryIO, *, force: bool = False, log: Callable[[str], None] = lambda line: None
) -> RestoreReport:
    """Restore the archive read from `stream` onto this machine: refuse a target that holds data unless `force`,
    check every checksum first, then the database, the files and keys, then re-adopt what Swarm runs."""
    started = time.monotonic()
    held = target_holds()
    if held and not force:
        raise RestoreError(
            "the target is not empty: " + "; ".join(held) + " (restore --force overwrites them)"
        )
    home = Path(settings.BERTH_HOME)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        manifest = archive_unpack(stream, staging)
        log(
            f"archive checked: {len(manifest['members'])} members, Berth {manifest['berth_version']}, "
            f"made {manifest['created_at']}"
        )
        kind = manifest["database"]["kind"]
        if kind != database_kind():
            raise RestoreError(
                f"the archive holds a {kind} database but this Berth uses {database_kind()} (set DATABASE_URL)"
            )
        _database_restore(staging / manifest["database"]["member"], kind)
        log(f"database restored ({kind}): " + ", ".join(f"{n} {w}" for w, n in manifest["counts"].items()))
        _files_restore(staging, manifest, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = RestoreReport(manifest=manifest)
    _migrations_check(log)
    _readopt(report, log)
    # Berth's processes that were running read their keys and installation id at start-up
    log(
        "restart Berth's processes (web, worker, beat, watcher) if they were running: they read the restored keys"
    )
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _migrations_check(log: Callable[[str], None]) -> None:
    """Say so when the archive comes from an older Berth: its database lacks this version's migrations."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        log(
            f"the restored database lacks {len(plan)} migration(s) of this Berth: run `manage.py migrate` next"
        )


def _files_restore(staging: Path, manifest: dict, log: Callable[[str], None]) -> None:
    home = Path(settings.BERTH_HOME)
    staged_home = staging / "home"
    for name in HOME_SECRETS:
        if (staged_home / name).is_file():
            os.replace(staged_home / name, home / name)
    if "installation_id" not in manifest["from_environment"]:
        if not (home / "installation_id").exists():
            (home / "installation_id").write_text(manifest["installation_id"])
        if not os.environ.get("BERTH_INSTALLATION_ID"):
            # this process already read a new id at start-up; the services to re-adopt carry the archive's
            settings.BERTH_INSTALLATION_ID = manifest["installation_id"]
    if settings.BERTH_INSTALLATION_ID != manifest["installation_id"]:
        log(
            f"warning: BERTH_INSTALLATION_ID is {settings.BERTH_INSTALLATION_ID}, the archive's installation was "
            f"{manifest['installation_id']}: its Swarm services are another installation's to this one"
        )
    missing = [name for name in manifest["from_environment"] if name != "installation_id"]
    if missing:
        log(
            f"not in the archive (set in the environment at backup time, keep setting them): {', '.join(missing)}"
        )
    repos = home / "repos"
    if (staged_home / "repos").is_dir():
        old = home / f".repos-replaced-{os.getpid()}"
        if repos.exists():
            repos.rename(old)
        os.replace(staged_home / "repos", repos)
        shutil.rmtree(old, ignore_errors=True)
        log(f"git repositories restored: {sum(1 for _ in repos.glob('*.git'))}")
    _router_restore(staging / "router", Path(settings.BERTH_ROUTER_DIR), log)
    registry = staging / "registry"
    if registry.is_dir():
        target = Path(settings.BERTH_REGISTRY_DIR)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in REGISTRY_CREDENTIALS:
            if (registry / name).is_file():
                shutil.move(registry / name, target / name)
        if (registry / "data").is_dir():
            shutil.copytree(registry / "data", target / "data", dirs_exist_ok=True)
            log("registry blobs restored")
        log(f"registry credentials restored into {target}")


def _router_restore(staged: Path, target: Path, log: Callable[[str], None]) -> None:
    """The router's state files, only where the router has none: a router still running (its folder intact)
    knows better than the archive what it serves, and is never touched."""
    if not staged.is_dir():
        return
    if (target / "slots.json").exists():
        log(f"router state kept: {target} is in place (the running router is not touched)")
        return
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copytree(staged, target, dirs_exist_ok=True)
    log(f"router state restored into {target} (start the router to serve it)")


def _image_reachable(image: str) -> bool:
    if registry_enabled() and image.startswith(f"{settings.BERTH_REGISTRY}/"):
        return True  # every node pulls it from the registry by digest
    return bool(image) and image_inspect(image) is not None


def _readopt(report: RestoreReport, log: Callable[[str], None]) -> None:
    """Count what Swarm runs for the restored apps (labelled with the installation and the app: the watcher routes
    them once it runs) and start again, from its image, each live release whose services are gone."""
    scheduler = get_scheduler()
    gone: list[Release] = []
    for app in App.objects.select_related("team").order_by("name"):
        report.apps += 1
        live = live_release(app)
        if live is None:
            continue
        running = [s for s in scheduler.services(app=app.name) if s.release == live.version]
        if running:
            report.services_running += len(running)
            report.readopted.append(app.name)
        else:
            gone.append(live)
    log(f"{report.apps} apps, {report.services_running} services running, re-adopted")
    for release in gone:
        label = f"{release.app.name} v{release.version}"
        if not _image_reachable(release.image):
            report.not_redeployed.append(
                f"{label}: image {release.image or '(none)'} is neither on this node nor in the registry"
            )
            continue
        try:
            deadline = time.monotonic() + REDEPLOY_TIMEOUT
            specs = process_specs(release)
            for spec in specs:
                scheduler.ensure_process(spec)
            for spec in specs:
                if spec.replicas:
                    process_wait_ready(app=release.app, spec=spec, deadline=deadline)
            app_reconcile(release.app)
            report.redeployed.append(label)
        except Exception as exc:  # noqa: BLE001 - each release is reported, the others go on
            report.not_redeployed.append(f"{label}: {exc}")
    if report.redeployed:
        log(f"redeployed from their images: {', '.join(report.redeployed)}")
    for line in report.not_redeployed:
        log(f"could not redeploy {line}")


# --- scheduled backups ----------------------------------------------------------------------------------------

INDEX = "index.json"
SCHEDULES = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
DUE_LOCK = "berth:lock:control-backup"


def schedule_seconds() -> int | None:
    """BERTH_CONTROL_BACKUP_SCHEDULE as seconds: hourly, daily, weekly or a number; empty or "off": None."""
    value = (getattr(settings, "BERTH_CONTROL_BACKUP_SCHEDULE", "daily") or "").strip().lower()
    if value in ("", "off"):
        return None
    return SCHEDULES.get(value) or max(60, int(value))


def control_backup_folder() -> Path:
    return Path(settings.BERTH_HOME) / "control-backups"


def control_backup_store() -> BackupStore:
    """BERTH_BACKUP_URL's S3 store when it names one (keys under control-plane/), else BERTH_HOME/control-backups."""
    if (settings.BERTH_BACKUP_URL or "").startswith("s3://"):
        return backup_store()
    return FolderStore(control_backup_folder())


def _store_key(name: str) -> str:
    return f"control-plane/{name}" if (settings.BERTH_BACKUP_URL or "").startswith("s3://") else name


def backups_index() -> list[dict]:
    """The scheduled backups, newest first (name, key, created_at, size, sha256, state, error)."""
    path = control_backup_folder() / INDEX
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def _index_write(entries: list[dict]) -> None:
    folder = control_backup_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = folder / f".{INDEX}.{os.getpid()}"
    partial.write_text(json.dumps(entries, indent=1))
    os.replace(partial, folder / INDEX)


def backup_verify(entry: dict) -> list[str]:
    """Verify a stored archive by restoring it: its checksum as stored, every member's against the manifest, then
    its database dump restored into a throwaway database and counted table by table against the counts taken at
    backup time. Returns the problems (none: verified)."""
    store = control_backup_store()
    folder = control_backup_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix=".verify-", dir=folder) as tmp:
        try:
            stream = store.open(entry["key"])
        except BackupStoreError as exc:
            return [str(exc)]
        try:
            checked = _ChecksumReader(stream)
            manifest = archive_unpack(checked, Path(tmp), keep=lambda name: name in (PG_DUMP, SQLITE_DUMP))
            checked.drain()
        except RestoreError as exc:
            return [str(exc)]
        finally:
            stream.close()
        if checked.digest.hexdigest() != entry["sha256"]:
            return [f"the stored archive does not match its sha256 {entry['sha256'][:12]}…"]
        database = manifest["database"]
        try:
            found = dump_counts_by_restoring(Path(tmp) / database["member"], database["kind"])
        except BackupError as exc:
            return [str(exc)]
        return compare_counts(database["rows"], found)


class _ChecksumReader:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> None:
        # gzip's trailer may be left unread by tarfile: the checksum covers the whole object
        while self.read(CHUNK):
            pass


def backup_scheduled_run(*, keep: int | None = None) -> dict:
    """Write an archive into the control-backup store, verify it by restoring its database, keep the newest
    `keep` verified ones (BERTH_CONTROL_BACKUP_KEEP). A failure is an audit event and `backup_alarm`'s message."""
    keep = keep or settings.BERTH_CONTROL_BACKUP_KEEP
    now = timezone.now()
    # the suffix keeps two backups of the same second apart (a manual run beside the schedule's)
    name = f"berth-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}.tar.gz"
    folder = control_backup_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = {"name": name, "key": _store_key(name), "created_at": now.isoformat(), "state": "writing"}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix=".write-", dir=folder) as tmp:
            local = Path(tmp) / name
            manifest = backup_to_file(local, with_registry_blobs=False)
            entry["counts"] = manifest["counts"]
            with open(local, "rb") as archive:
                stored = control_backup_store().put(entry["key"], iter(lambda: archive.read(CHUNK), b""))
        entry.update(size=stored.size, sha256=stored.sha256, seconds=round(time.monotonic() - started, 2))
    except (BackupError, BackupStoreError, OSError) as exc:
        entry.update(state="failed", error=str(exc))
        _record_failure(entry)
    _index_write([entry, *[e for e in backups_index() if e["name"] != name]])
    if entry["state"] != "failed":
        entry = backup_verify_record(name)
    kept, pruned = _prune(backups_index(), keep)
    _index_write(kept)
    for old in pruned:
        try:
            control_backup_store().delete(old["key"])
        except BackupStoreError as exc:
            logger.warning("could not delete the old control-plane backup %s: %s", old["name"], exc)
    return entry


def backup_verify_record(name: str) -> dict:
    """Verify the stored backup `name` by restoring it (backup_verify) and record the outcome in the index:
    `verified`, or `verify_failed` with the problems, an audit event and the alarm."""
    entries = backups_index()
    entry = next((e for e in entries if e["name"] == name), None)
    if entry is None:
        raise BackupError(f"no control-plane backup named {name}")
    problems = backup_verify(entry)
    entry.update(
        state="verified" if not problems else "verify_failed",
        error="; ".join(problems),
        verified_at=timezone.now().isoformat(),
    )
    if problems:
        _record_failure(entry)
    _index_write(entries)
    return entry


def _record_failure(entry: dict) -> None:
    logger.error("control-plane backup %s %s: %s", entry["name"], entry["state"], entry["error"])
    audit_record(
        action=f"controlplane.backup_{entry['state']}",
        actor=None,
        target=entry["name"],
        data={"error": entry["error"][:500]},
    )


def _prune(entries: list[dict], keep: int) -> tuple[list[dict], list[dict]]:
    """The newest `keep` verified backups stay, and every newer one whatever its state (the alarm reads them)."""
    kept, pruned, verified = [], [], 0
    for entry in entries:
        if verified >= keep:
            pruned.append(entry)
            continue
        kept.append(entry)
        verified += entry.get("state") == "verified"
    return kept, pruned


def backup_due(now: dt.datetime | None = None) -> bool:
    """Whether the schedule asks for a backup now: none yet, or the newest is older than the interval."""
    interval = schedule_seconds()
    if interval is None:
        return False
    entries = backups_index()
    if not entries:
        return True
    newest = dt.datetime.fromisoformat(entries[0]["created_at"])
    return ((now or timezone.now()) - newest).total_seconds() >= interval


def backup_run_if_due() -> dict | None:
    """The beat's tick: one backup when due, never two at once (a Redis lock held for the run)."""
    if not backup_due():
        return None
    lock = redis_client().lock(DUE_LOCK, timeout=6 * 3600)
    if not lock.acquire(blocking=False):
        return None
    try:
        # another worker may have finished one between the check and the lock
        return backup_scheduled_run() if backup_due() else None
    finally:
        lock.release()


def backup_alarm() -> str | None:
    """What is wrong with the control plane's scheduled backups (for `manage.py doctor`), None when fine: the
    newest one failed or did not verify, or none was made for twice the schedule's interval."""
    interval = schedule_seconds()
    entries = backups_index()
    if entries and entries[0].get("state") in ("failed", "verify_failed"):
        what = "capture" if entries[0]["state"] == "failed" else "verification by restore"
        return f"control-plane backup {entries[0]['name']}'s {what} failed: {entries[0].get('error') or 'no message'}"
    if interval is None:
        return None
    if not entries:
        return None  # nothing yet: the first one is made at the beat's next tick
    age = (timezone.now() - dt.datetime.fromisoformat(entries[0]["created_at"])).total_seconds()
    if age > 2 * interval:
        return f"no control-plane backup for {age / 3600:.0f} h (schedule: every {interval / 3600:.0f} h); is beat running?"
    return None
