"""Benchmark: how long until HTTPS serves, against a local ACME CA (pebble), through the whole running platform.

    .venv/bin/python bench/cert_issue.py [--pushes 3] [--domains 5]

- first push → HTTPS: `git push` of a new app (the stdlib hello app: no dependency to fetch) until the router serves
  a certificate for its built-in hostname that pebble's root verifies; beside it, from the moment the router first
  serves the app over plain HTTP (the release is live) to that certificate: the issuance alone.
- domains:add → HTTPS: the API call adding a custom domain (POST /api/v1/apps/<app>/domains) until the router
  serves a verified certificate for that name (SNI).

Stands up a whole Berth of its own on 127.0.0.1: HAProxy with its HTTP and HTTPS frontends on free ports, gunicorn +
uvicorn, a Celery worker and the watcher, a PostgreSQL database of its own (berth_bench_cert_issue on
127.0.0.1:54329, dropped at the end) and Redis (BENCH_REDIS_URL, default db 14: `make bench`'s; flushed at the start
and the end); pebble and pebble-challtestsrv (tests/support/pebble.py: every name resolves to 127.0.0.1, so pebble
validates HTTP-01 through this router). The apps domain is apps.localhost, so custom domains can be
d<n>-<app>.localhost (names under .localhost count as pointing at this router). Each figure is the median of the
runs with their spread; the verifying client polls a TLS handshake every 50 ms. Prints a table, writes
bench/results/cert_issue.json. Everything it starts it stops by PID; the services, images and database it made are
removed.
"""

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "berth_bench_cert_issue"
PG = "postgres://postgres@127.0.0.1:54329"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
APPS_DOMAIN = "apps.localhost"
APP_PREFIX = "bench-tls-"
PUSH_TIMEOUT_S = 600
SERVE_TIMEOUT_S = 180  # per certificate: seconds against a local CA; a hang is a failed run, not a figure
POLL_S = 0.05

sys.path[:0] = [str(REPO), str(REPO / "platform"), str(REPO / "bench")]
WORK = Path(tempfile.mkdtemp(prefix="berth-bench-tls-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="berth.config.settings",
    BERTH_SECRET_KEY=os.environ.get("BERTH_SECRET_KEY", "bench"),
    BERTH_HOME=str(WORK / "home"),
    DATABASE_URL=f"{PG}/{DB_NAME}",
    REDIS_URL=REDIS_URL,
    BERTH_ROUTER_DIR=str(WORK / "router"),
    BERTH_APPS_DOMAIN=APPS_DOMAIN,
    BERTH_REGISTRY="",  # images stay local, as on one node
)

from bench_platform import Platform, database, remove_apps  # noqa: E402
from common import figure, print_table, save_figures  # noqa: E402

from tests.conftest import write_hello_app  # noqa: E402
from tests.support.pebble import PebbleStarter, challtestsrv_running  # noqa: E402


def verified(port: int, hostname: str, context: ssl.SSLContext) -> bool:
    """Does the router serve `hostname` (SNI) a certificate the CA's root verifies? Not its self-signed default."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=hostname):
                return True
    except (ssl.SSLError, OSError):
        return False


def http_serves(port: int, hostname: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": hostname}, timeout=5).status_code in (
            200,
            308,
        )
    except httpx.TransportError:
        return False


def poll_until(predicate, *, started: float, what: str, platform: Platform) -> float:
    """Seconds from `started` (monotonic) until `predicate()`; RuntimeError with the worker's log past the bound."""
    deadline = started + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - started
        time.sleep(POLL_S)
    raise RuntimeError(f"{what} not within {SERVE_TIMEOUT_S} s\n{platform.worker_log_tail()}")


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=PUSH_TIMEOUT_S
    )


def first_push(berth: Platform, token: str, name: str, context: ssl.SSLContext) -> dict:
    """A new app's first push: seconds to HTTP served (live), to the push's end, to HTTPS served (verified)."""
    hostname = f"{name}.{APPS_DOMAIN}"
    path = WORK / "src" / name
    path.mkdir(parents=True)
    write_hello_app(path, f"hello {name}")
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "bench@example.test")
    git(path, "config", "user.name", "bench")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    remote = berth.web_url.replace("http://", f"http://b:{token}@") + f"/git/{name}.git"
    output = WORK / f"push-{name}.log"  # a file, not a pipe: nothing blocks the push while it is not read
    with output.open("w") as stderr:
        started = time.monotonic()
        push = subprocess.Popen(["git", "push", remote, "main"], cwd=path, stderr=stderr, text=True)
        marks: dict[str, float] = {}
        deadline = started + PUSH_TIMEOUT_S
        # polled while the push runs: the router serves the new app (HTTP) before `git push` returns
        while time.monotonic() < deadline and not ("https" in marks and "push" in marks):
            if "push" not in marks and push.poll() is not None:
                marks["push"] = time.monotonic() - started
                if push.returncode != 0:
                    raise RuntimeError(f"push to {name} failed:\n{output.read_text()[-3000:]}")
            if "http" not in marks and http_serves(berth.router_port, hostname):
                marks["http"] = time.monotonic() - started
            if "http" in marks and "https" not in marks and verified(berth.https_port, hostname, context):
                marks["https"] = time.monotonic() - started
            time.sleep(POLL_S)
        if push.poll() is None:
            push.kill()  # past the deadline: reported below
            push.wait()
    if "https" not in marks or "push" not in marks:
        raise RuntimeError(f"{name}: {marks} after {PUSH_TIMEOUT_S} s\n{berth.worker_log_tail()}")
    return {"push_s": marks["push"], "http_s": marks["http"], "https_s": marks["https"]}


def domain_add(berth: Platform, token: str, app: str, context: ssl.SSLContext) -> dict:
    """POST a new custom domain; seconds to the API's answer and to its certificate served (verified)."""
    hostname = f"d{uuid.uuid4().hex[:6]}-{app}.localhost"
    started = time.monotonic()
    answer = httpx.post(
        f"{berth.web_url}/api/v1/apps/{app}/domains",
        json={"hostname": hostname},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    api_s = time.monotonic() - started
    if answer.status_code != 201:
        raise RuntimeError(f"domains:add {hostname}: HTTP {answer.status_code} {answer.text[:300]}")
    served_s = poll_until(
        lambda: verified(berth.https_port, hostname, context),
        started=started,
        what=f"a certificate for {hostname}",
        platform=berth,
    )
    return {"hostname": hostname, "api_s": api_s, "served_s": served_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pushes", type=int, default=3, help="new apps pushed for the first time (at most 10)"
    )
    parser.add_argument("--domains", type=int, default=5, help="custom domains added (at most 20)")
    args = parser.parse_args()
    pushes, domains = max(1, min(args.pushes, 10)), max(1, min(args.domains, 20))

    import logging

    import django
    import redis

    logging.getLogger("httpx").setLevel(logging.WARNING)
    redis.Redis.from_url(REDIS_URL).flushdb()
    database(DB_NAME, "create")
    (WORK / "home").mkdir(parents=True)
    django.setup()
    berth = Platform(WORK, https=True)
    names: list[str] = []
    pushed: list[dict] = []
    added: list[dict] = []
    (WORK / "pebble").mkdir()
    try:
        with challtestsrv_running(WORK / "pebble") as dns_server:
            starter = PebbleStarter(WORK / "pebble", dns_server)
            try:
                pebble = starter.start(berth.router_port)
                context = ssl.create_default_context(cadata=pebble.root_pem())
                berth.start({**pebble.env, "BERTH_ACME_EMAIL": "bench@example.test"})
                from berth.accounts.services import team_create, token_create
                from berth.apps.services import app_create
                from django.contrib.auth import get_user_model

                user = get_user_model().objects.create_user(
                    username="bench", email="bench@example.test", password="x-bench-1"
                )
                team = team_create(name="bench", actor=user)
                _, token = token_create(user=user, name="bench")
                for run in range(pushes):
                    name = f"{APP_PREFIX}{uuid.uuid4().hex[:6]}"
                    names.append(name)
                    app_create(team=team, name=name, actor=user)
                    pushed.append(first_push(berth, token, name, context))
                    p = pushed[-1]
                    print(
                        f"push {run + 1}/{pushes}: push returns {p['push_s']:.2f} s, HTTP {p['http_s']:.2f} s, "
                        f"HTTPS {p['https_s']:.2f} s",
                        flush=True,
                    )
                for run in range(domains):
                    added.append(domain_add(berth, token, names[0], context))
                    a = added[-1]
                    print(
                        f"domain {run + 1}/{domains}: API {a['api_s']:.2f} s, served {a['served_s']:.2f} s",
                        flush=True,
                    )
            finally:
                starter.stop_all()
    finally:
        # the processes first: a failed removal (the Docker engine restarted, say) must not leave them running
        berth.stop()
        try:
            remove_apps(names)
        except Exception as error:  # reported; the database and Redis are still cleaned below
            print(f"removing the bench apps failed: {error!r}", file=sys.stderr)
        from django.db import connections

        connections.close_all()
        database(DB_NAME, "drop")
        redis.Redis.from_url(REDIS_URL).flushdb()

    figures = [
        figure("first git push → HTTPS served (new app)", [p["https_s"] for p in pushed], "s"),
        figure("  first git push → HTTP served (live)", [p["http_s"] for p in pushed], "s"),
        figure(
            "  live (HTTP) → HTTPS served: the issuance", [p["https_s"] - p["http_s"] for p in pushed], "s"
        ),
        figure("domains:add (API call) → certificate served", [a["served_s"] for a in added], "s"),
        figure("  domains:add API answer", [a["api_s"] for a in added], "s"),
    ]
    print()
    print_table(
        f"HTTPS issuance against a local pebble ({pushes} first pushes, {domains} domains)",
        ["figure", "median s", "min s", "max s", "runs"],
        [[f["name"], f["median"], f["min"], f["max"], f["runs"]] for f in figures],
    )
    save_figures("cert_issue", figures)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "cert_issue.json").write_text(
        json.dumps({"pushes": pushed, "domains": added}, indent=2) + "\n"
    )
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
