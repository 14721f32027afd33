"""Fixtures shared by every test folder: ports and waiting, a real HAProxy router, the sample apps
(tests/fixtures/apps), and, from tests/support/factories.py, the factories for users, teams with members in each
role, apps and API clients with real tokens.

Kept light (no Django import at the top): the benchmarks in bench/ import free_port and wait_for from here."""

import collections
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
from xdist.scheduler import LoadFileScheduling

from tests.support import forkserver

REPO_DIR = Path(__file__).resolve().parent.parent
# the sample apps: one per buildpack (detection and builds) and `hello`, the end-to-end tests' stdlib web app
FIXTURE_APPS = REPO_DIR / "tests" / "fixtures" / "apps"

pytest_plugins = ["tests.support.factories"]

# When this pytest run started (Unix time), the same in every xdist worker: the controller imports this module before
# it starts them, and they inherit its environment. A Docker object a session's clean-up finds that was made earlier
# is a killed run's leftover; a newer one is another worker's, in use.
TEST_RUN_STARTED = float(os.environ.setdefault("BERTH_TEST_RUN_STARTED", f"{time.time():.3f}"))

# Parallel workers (pytest-xdist, `-n N`): each xdist worker gets a Redis database, a BERTH_HOME and a test database
# of its own, so tests that flush Redis (the end-to-end platform), count sign-ins in it or write repositories under
# BERTH_HOME never see another worker's. The test database is pytest-django's: test_<name>_gwN on PostgreSQL,
# <BERTH_HOME>/test.sqlite3_gwN on SQLite.
# Redis: worker gwN takes the N-th database counting down from REDIS_URL's own (gw0 keeps it), round through 15,
# never 0 (`make up`'s platform) nor 14 (`make bench`'s). With `make test`'s db 15: gw0 15, gw1 13, gw2 12, gw3 11.
REDIS_DBS_NOT_FOR_WORKERS = frozenset({0, 14})


def worker_redis_db(base: int, index: int) -> int:
    """The Redis database of xdist worker number `index` when REDIS_URL names database `base`."""
    below = [(base - step) % 16 for step in range(1, 16)]
    candidates = [base, *(db for db in below if db not in REDIS_DBS_NOT_FOR_WORKERS)]
    if index >= len(candidates):
        raise pytest.UsageError(f"too many xdist workers: Redis has {len(candidates)} databases for them")
    return candidates[index]


def worker_redis_url(url: str, index: int) -> str:
    """REDIS_URL with the database of xdist worker `index` (in the path, or `?db=` for a unix socket)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["db"] = str(worker_redis_db(int(query.get("db") or 0), index))
        # by hand: urlunsplit drops the empty host of unix:///path
        return f"unix://{parts.netloc}{parts.path}?{urllib.parse.urlencode(query)}"
    base = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{worker_redis_db(base, index)}").geturl()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs) -> None:
    """Each worker's Redis database and BERTH_HOME, in its environment from its start (and a restarted one's):
    a worker's own conftest would come too late, pytest-django reads the settings before importing any conftest.
    The processes the tests start (the platform's web and worker, manage.py) inherit them."""
    base_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    base_home = Path(os.environ.get("BERTH_HOME") or "/var/tmp/berth-test-home")
    # another pytest run beside this one on the same Redis (`make test` runs two tiers at once) holds the databases
    # of the first BERTH_TEST_WORKER_OFFSET workers
    offset = int(os.environ.get("BERTH_TEST_WORKER_OFFSET") or 0)
    for spec in specs:  # ids "gw0", "gw1"...: what the worker sees as PYTEST_XDIST_WORKER
        index = int(spec.id.removeprefix("gw"))
        spec.env["REDIS_URL"] = worker_redis_url(base_url, offset + index)
        spec.env["BERTH_HOME"] = str(base_home / f"xdist-{spec.id}")


def pytest_configure(config) -> None:
    """The processes the tests start (the platform's web, worker and watcher, manage.py) are this installation
    whatever BERTH_HOME they get: they inherit its id (berth.runtime.scheduler.is_ours), so the test sees what
    they make. pytest-django has read the settings by now."""
    from django.conf import settings  # here, not at the top: bench/ imports this module without Django

    from tests.support import flush

    os.environ.setdefault("BERTH_INSTALLATION_ID", settings.BERTH_INSTALLATION_ID)
    flush.install()  # a transactional test's rows deleted after it; content types and permissions kept
    # Started in the background by a shell without job control (`make test &`, nohup, some CI runners), this process
    # inherits SIGINT ignored, and so would every program a test starts: a test's Ctrl-C (SIGINT) to `berth logs -t`
    # or `git push` would do nothing. A handler, unlike an ignored signal, is reset to the default by exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Fixtures that need the real Docker engine in swarm mode: the whole platform of the end-to-end suites (its web
# and worker deploy to Swarm), the multi-node cluster, and the Swarm services of tests/observe. A test using one
# is marked `docker` here, so `pytest -m "not docker"` (the fast tier) never needs Docker even when a test forgets
# the mark.
DOCKER_FIXTURES = frozenset({"berth_platform", "tenant", "cluster", "run_service"})


# Fixtures through which a test uses the test database (pytest-django's; the `django_db` mark asks for one of them)
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)


def uses_database(item) -> bool:
    return bool(item.get_closest_marker("django_db")) or bool(
        DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    )


def database_level(item) -> bool:
    """A test the SQLite tier runs again: one using the database, but not through a real browser (`browser`): a
    page's queries are its view's, which the test client's page tests run on SQLite too, and what the browser
    adds (scripts, sockets, layout) does not depend on the database. chromium for each of them again was ~110 of
    the ~3,300 CPU-seconds of a `make test` on 2 CPUs (the PostgreSQL tier runs them all)."""
    return uses_database(item) and "browser" not in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
    # `make test`'s SQLite tier runs again the database-level tests, on SQLite: the others (a router's TLS, the
    # buildpacks' detection, a CLI's arguments, a page's scripts in a browser) ran on the PostgreSQL tier already
    # and would only do the same
    if os.environ.get("BERTH_TEST_DATABASE_ONLY") == "1":
        kept = [item for item in items if database_level(item)]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if not database_level(item)])
            items[:] = kept
    if getattr(config, "workerinput", {}).get("longest_units_first"):
        longest_units_first(items)


# Modules that build the same sample apps from the same stack (node-yarn1, node-pnpm): the engine's builder takes a
# step from any image with the same parent and instruction, so on two workers one build took a cached step from the
# other module's image just as that module's clean-up removed it ("unknown parent image ID" at the next step, the
# yarn build-cache test, twice in four runs of session 26). On one worker they run one after the other.
SAME_BUILDS = "the buildpack builds"
SAME_BUILDS_MODULES = frozenset(
    {"tests/buildpacks/test_build_cache.py", "tests/e2e/test_buildpack_corpus.py"}
)


def scheduling_unit(nodeid: str) -> str:
    """What `--dist loadfile` hands a worker at once: a module, all of tests/cluster, or the modules that build the
    same apps."""
    path = nodeid.split("::", 1)[0]
    if path in SAME_BUILDS_MODULES:
        return SAME_BUILDS
    return "tests/cluster" if path.startswith("tests/cluster/") else path


# Roughly how long the longest units take in `make test` (seconds, session 23: 2 CPUs, the Docker tier's workers
# beside the other tiers). The units are handed out longest first, so no worker starts a 3-minute module
# while the others are finishing: xdist's own order (by number of tests) gave the single-test corpus module last,
# and its worker ran on alone at the end of the tier. A unit not named: 20 s a test end to end, 3 s else.
UNIT_SECONDS = {
    SAME_BUILDS: 570,  # tests/buildpacks/test_build_cache.py 370, tests/e2e/test_buildpack_corpus.py 200
    "tests/cluster": 340,
    "tests/addons/test_backups.py": 240,
    "tests/e2e/test_run_route_ops.py": 140,
    "tests/e2e/test_bad_input_api_fuzz.py": 135,
    "tests/e2e/test_bad_input_doors.py": 130,
    "tests/e2e/test_builds_lifecycle.py": 120,
    "tests/e2e/test_faults_worker.py": 110,
    "tests/e2e/test_run_route_bad_releases.py": 110,
    "tests/e2e/test_cron_webhooks_e2e.py": 80,  # waits for the next minute (cron), up to 60 s
    # many tests, each quick
    "tests/api/test_permission_matrix.py": 20,
    "tests/api/test_api.py": 10,
}


def longest_units_first(items: list) -> None:
    """Order `items` by the expected time of their unit, longest first; a unit's tests stay together, in order."""
    tests = collections.Counter(scheduling_unit(item.nodeid) for item in items)

    def seconds(unit: str) -> float:
        per_test = 20 if unit.startswith("tests/e2e/") else 3
        return UNIT_SECONDS.get(unit, tests[unit] * per_test)

    order = {item.nodeid: index for index, item in enumerate(items)}
    items.sort(
        key=lambda item: (
            -seconds(scheduling_unit(item.nodeid)),
            scheduling_unit(item.nodeid),
            order[item.nodeid],
        )
    )


class ClusterTogetherScheduling(LoadFileScheduling):
    """`--dist loadfile` (each module's tests on one worker: its module fixtures, and names its tests reuse) with
    all of tests/cluster as one unit: their 3-node swarm is one per machine (tests/cluster/harness.py locks it).
    The units go out in the order of the collection (longest_units_first), not xdist's by number of tests."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return scheduling_unit(nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    # the workers collect, and the order they collect in is the order the units go out; xdist gives a worker
    # `--dist no`, so it is told here
    node.workerinput["longest_units_first"] = node.config.getvalue("dist") == "loadfile"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadfile":
        return ClusterTogetherScheduling(config, log)
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report kept on the test (`item.report_call`), so a fixture's teardown knows the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    """The tests' own time (setup, call and teardown), beside the wall time pytest prints: with parallel workers
    the two differ, and on a busy machine the wall time alone says little."""
    reports = [
        report
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport)
    ]
    if reports:
        tests = len({report.nodeid for report in reports})
        seconds = sum(report.duration for report in reports)
        phases: collections.Counter = collections.Counter()
        for report in reports:
            phases[report.when] += report.duration
        split = ", ".join(f"{when} {phases[when]:.0f}s" for when in ("setup", "call", "teardown"))
        terminalreporter.write_line(f"tests' own time: {seconds:.1f}s over {tests} tests ({split})")
        # where a parallel tier's wall time goes: each worker's share (the last to finish sets the tier's time)
        # and the costliest units of scheduling (a module, or all of tests/cluster)
        workers: collections.Counter = collections.Counter()
        units: collections.Counter = collections.Counter()
        for report in reports:
            node = getattr(report, "node", None)
            workers[getattr(getattr(node, "gateway", None), "id", "main")] += report.duration
            path = report.nodeid.split("::", 1)[0]
            units["tests/cluster" if path.startswith("tests/cluster/") else path] += report.duration
        if len(workers) > 1:
            shares = ", ".join(f"{name} {s:.0f}s" for name, s in sorted(workers.items()))
            terminalreporter.write_line(f"own time by worker: {shares}")
        costliest = ", ".join(f"{unit} {s:.0f}s" for unit, s in units.most_common(8))
        terminalreporter.write_line(f"costliest modules: {costliest}")


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never one this process handed out before: the kernel may give a port
    just closed again, so two taken in a row (pebble's listen and management ports) once were the same one."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise AssertionError("no loopback port this process has not handed out already")


# httpx loads the public CAs into a new TLS context for every client it makes, and httpx.get() makes one a call:
# ~25 ms of CPU even for http://. The tests' plain-HTTP requests to loopback (a poll every 0.1 s while a platform
# starts, ~100 platforms a run) pass this instead, a context that trusts no CA: never used for http://, and were it,
# it would refuse. py-spy of `make test`'s workers: ~94 s of their samples were in making those contexts.
NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def hello_app(message: str, *, mode: str = "", loud: bool = False) -> str:
    """The source of tests/fixtures/apps/hello/app.py answering `message`, in `mode` ("" serves; "crash",
    "latecrash", "fail", "noport": see the app), printing a line per request when `loud`."""
    source = (FIXTURE_APPS / "hello" / "app.py").read_text()
    for name, value in (("MESSAGE", message), ("MODE", mode), ("LOUD", loud)):
        source, count = re.subn(
            rf"^{name} = .*$", lambda _, n=name, v=value: f"{n} = {v!r}", source, flags=re.M
        )
        assert count == 1, f"hello/app.py has no single {name} line"
    return source


def write_hello_app(path: Path, message: str, *, mode: str = "", loud: bool = False) -> None:
    """Write the hello app into the working tree `path` (app.py and an empty requirements.txt: the python
    buildpack, no dependencies to fetch)."""
    (path / "requirements.txt").write_text("")
    (path / "app.py").write_text(hello_app(message, mode=mode, loud=loud))


@pytest.fixture
def sample_app(tmp_path):
    """A private copy of one of tests/fixtures/apps (by name), for a test that changes it."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(FIXTURE_APPS / name, tmp_path / "sample-apps" / name))

    return copy


@pytest.fixture
def router(tmp_path, settings):
    """A real HAProxy router on free loopback ports (HTTP `port`, HTTPS `https_port`), in its own folder; stopped
    by PID afterwards."""
    from berth.routing.haproxy import haproxy_command, write_config

    directory = tmp_path / "router"
    settings.BERTH_ROUTER_DIR = directory
    settings.BERTH_ROUTER_ADMIN_SOCKET = directory / "admin.sock"
    port, https_port = free_port(), free_port()
    settings.BERTH_HTTPS_PORT = https_port
    paths = write_config(http_port=port, https_port=https_port)
    process = subprocess.Popen(haproxy_command(paths), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: settings.BERTH_ROUTER_ADMIN_SOCKET.exists(), timeout=10, message="the admin socket")
        yield SimpleNamespace(paths=paths, port=port, https_port=https_port, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def manage(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run manage.py as a process of its own (settings are read at start-up, so each env gets its own), forked
    from this test process's fork server (tests/support/forkserver.py: the libraries imported once, ~0.5 s of CPU
    less for each of the ~150 a run starts); as subprocess.run(capture_output=True, text=True, timeout=120)."""
    full_env = {**os.environ, **(env or {})}
    command = [str(REPO_DIR / ".venv/bin/python"), str(REPO_DIR / "manage.py"), *args]
    with tempfile.TemporaryDirectory(prefix="berth-manage-") as directory:
        stdout, stderr = Path(directory, "stdout"), Path(directory, "stderr")
        process = forkserver.shared().spawn(command, env=full_env, log=stdout, stderr=stderr)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise
        result = subprocess.CompletedProcess(command, code, stdout.read_text(), stderr.read_text())
    if check:
        result.check_returncode()
    return result


@pytest.fixture(autouse=True)
def _fresh_sign_in_counts(settings):
    """Failed sign-ins are counted in Redis across processes (berth.accounts.throttles); a test starts with none
    left by an earlier one (the suite runs twice on one Redis database). Not FLUSHDB: Celery's queues live there."""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
        keys = list(client.scan_iter(match="*throttle:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test that stopped Redis on purpose; the next one finds it back


@pytest.fixture(autouse=True)
def _fast_passwords(request, settings):
    # PBKDF2 at Django's 1,000,000 rounds costs ~0.25 CPU-s a user; the matrix creates hundreds. With a running
    # platform, its web process keeps the production hashers: it could not check MD5, but checks PBKDF2 at the
    # rounds the stored hash names (and re-hashes at its own on a sign-in, as after an upgrade of Django)
    if "berth_platform" in request.fixturenames:
        settings.PASSWORD_HASHERS = ["tests.support.factories.QuickPBKDF2PasswordHasher"]
        return
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
