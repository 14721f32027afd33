"""Backup and restore figures for a control plane of ~100 apps (not a test: run it by hand).

    BERTH_SECRET_KEY=t .venv/bin/python tests/controlplane/bench_backup.py [--apps 100]

Makes a PostgreSQL database of its own (berth_cp_bench on DATABASE_URL's server, default 127.0.0.1:54329) and a
BERTH_HOME under /var/tmp, seeds N apps (a team each per 10 apps, 5 config vars, 5 releases, a git repository with
3 commits, an API token), then times `manage.py backup` and, after dropping the schema and removing BERTH_HOME,
`manage.py restore`; prints the archive's size and both times, checks the counts came back, removes it all."""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
SERVER = "postgres://postgres@127.0.0.1:54329"
DATABASE = "berth_cp_bench"
HOME = Path("/var/tmp/berth-cp-bench")

SEED = """
import subprocess, tempfile
from pathlib import Path
from django.contrib.auth import get_user_model
from berth.accounts.services import team_create, token_create
from berth.apps.services import app_create
from berth.builds.repos import repo_path
from berth.releases.models import ReleaseStatus
from berth.releases.services import config_update, release_create, release_set_status

N = {apps}
user = get_user_model().objects.create_user(username="bench", password="pw-123456")
token_create(user=user, name="bench")
teams = [team_create(name=f"bench-team-{{t}}", actor=user) for t in range((N + 9) // 10)]
work = Path(tempfile.mkdtemp())
git = ["git", "-c", "user.email=b@e.c", "-c", "user.name=b"]
for n in range(N):
    app = app_create(team=teams[n // 10], name=f"bench-app-{{n}}", actor=user)
    config_update(app=app, changes={{f"VAR_{{k}}": f"value-{{n}}-{{k}}" * 4 for k in range(5)}}, actor=user)
    for v in range(4):
        release = release_create(app=app, image=f"bench-{{n}}:v{{v}}", procfile={{"web": "python app.py"}},
                                 description="deploy", actor=user)
        release_set_status(release=release, from_statuses=[ReleaseStatus.PENDING], to_status=ReleaseStatus.SUPERSEDED)
    tree = work / app.name
    subprocess.run([*git, "init", "-q", "-b", "main", str(tree)], check=True)
    for c in range(3):
        (tree / "app.py").write_text(f"print('bench {{n}} commit {{c}}')\\n" * 50)
        subprocess.run([*git, "-C", str(tree), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(tree), "commit", "-q", "-m", f"c{{c}}"], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(repo_path(app_name=app.name))], check=True)
    subprocess.run(["git", "-C", str(tree), "push", "-q", str(repo_path(app_name=app.name)), "main"], check=True)
"""
COUNT = """
from berth.apps.models import App
from berth.releases.models import Release
r = Release.objects.order_by("pk").last()
print(App.objects.count(), Release.objects.count(), r.config)
"""


def manage(env: dict, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        sys.exit(f"manage.py {args[0]} failed: {result.stderr.strip()[-2000:]}")
    return result


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(["psql", f"{SERVER}/{database}", "-qc", sql], check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=100)
    apps = parser.parse_args().apps
    env = {
        **os.environ,
        "BERTH_HOME": str(HOME),
        "DATABASE_URL": f"{SERVER}/{DATABASE}",
        "BERTH_ROUTER_DIR": str(HOME.with_name(HOME.name + "-router")),
        "BERTH_REGISTRY": "",
        "BERTH_SCHEDULER": "memory",  # only the control plane is measured; no app runs
    }
    shutil.rmtree(HOME, ignore_errors=True)
    psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    psql(f"CREATE DATABASE {DATABASE}")
    archive = HOME.with_name("berth-cp-bench.tar.gz")
    try:
        manage(env, "migrate", "-v0")
        manage(env, "shell", "-c", SEED.format(apps=apps))
        before = manage(env, "shell", "-c", COUNT).stdout
        started = time.monotonic()
        backup = manage(env, "backup", "--output", str(archive))
        backup_seconds = time.monotonic() - started
        psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", DATABASE)
        shutil.rmtree(HOME)
        started = time.monotonic()
        restore = manage(env, "restore", str(archive), "--yes")
        restore_seconds = time.monotonic() - started
        after = manage(env, "shell", "-c", COUNT).stdout
        assert after == before, (before, after)
        print(backup.stdout.strip())
        print(restore.stdout.strip())
        print(
            f"{apps} apps: archive {archive.stat().st_size / 2**20:.2f} MB, backup {backup_seconds:.1f} s, "
            f"restore {restore_seconds:.1f} s (wall, manage.py start-up included); counts and config identical"
        )
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(HOME, ignore_errors=True)
        psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
