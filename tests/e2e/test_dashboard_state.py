"""The app page follows the platform without a reload (issue 20, "live state from one source"): in a real browser
against the whole running platform, through two pushes, a scale 2 -> 1 and a rollback, what the page shows (the
header's version, Releases, Processes, Formation, Recent builds) matches what the API says (`berth releases`,
`berth ps`, `berth builds`, `berth scale`) within a second; "Roll back" is never offered on a release that is
live or still rolling out.

How: the page records every change of what it shows (a MutationObserver, with the browser's clock) while the test
reads the API about ten times a second (with the same machine's clock). Every state the API holds for at least
STABLE seconds must appear on the page no later than LAG_LIMIT after the API first showed it. The lags are printed
(pytest -s) and written to test-artifacts/dashboard-state-lag.json.
"""

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_DIR, write_hello_app
from tests.e2e.test_push_to_live import get, git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
ARTIFACTS = REPO_DIR / "test-artifacts"
LAG_LIMIT = 1.0  # seconds: "never older than a second"
STABLE = 1.0  # a state the platform held this long must have been shown
SETTLE = 3.0  # a phase ends once its action is done and the API said the same for this long
PHASE_TIMEOUT = 240.0
SAMPLE_INTERVAL = 0.1

# What the page shows, read from its DOM (the same elements the page has always had), as one comparable value.
PAGE_STATE_JS = """() => {
  const text = (node) => (node ? node.textContent.trim() : "");
  const releases = [...document.querySelectorAll("#releases-table tbody tr[data-release]")].map(
    (tr) => [text(tr.cells[0]), text(tr.querySelector(".badge"))]);
  const processes = [...document.querySelectorAll("#processes-body tr[data-task-id]")].map(
    (tr) => [tr.dataset.process, text(tr.cells[1]), text(tr.querySelector(".badge")).split(" ")[0]]).sort();
  const formation = [...document.querySelectorAll("#formation-form tr[data-formation]")].map(
    (tr) => [tr.dataset.formation, Number(tr.querySelector("input[name^='replicas-']").value)]);
  const builds = [...document.querySelectorAll("#builds-list li[data-build]")].map(
    (li) => [li.dataset.build, text(li.querySelector(".badge"))]);
  return JSON.stringify([text(document.getElementById("current-release")), releases, processes, formation, builds]);
}"""

# Record each change with the time it happened (seconds since the epoch, as time.time() in the test).
RECORDER_JS = """(stateOf) => {
  const read = eval(stateOf);
  window.__berthStates = [];
  window.__berthRollbacks = [];
  let last = null;
  const record = () => {
    const state = read();
    if (state === last) return;
    last = state;
    window.__berthStates.push([Date.now() / 1000, state]);
    // every "Roll back" button with the status its release shows at that moment
    document.querySelectorAll("button[data-action='rollback']").forEach((b) => {
      const row = b.closest("tr");
      window.__berthRollbacks.push([b.dataset.version, row ? row.querySelector(".badge").textContent.trim() : ""]);
    });
  };
  new MutationObserver(record).observe(document.getElementById("app-root"),
    { subtree: true, childList: true, characterData: true, attributes: true });
  record();
}"""


class EngineBusy(Exception):
    """The API answered 503: the engine failed a listing for a moment (a service removed while listed)."""


def api_get(client: httpx.Client, path: str) -> list:
    answer = client.get(path)
    if answer.status_code == 503:
        raise EngineBusy(answer.text)
    assert answer.status_code == 200, answer.text
    return answer.json()


def api_state(client: httpx.Client, app: str) -> str:
    """What `berth releases`, `berth ps`, `berth scale` and `berth builds` say, in the page's shape."""
    releases = api_get(client, f"/api/v1/apps/{app}/releases")[:30]
    processes = api_get(client, f"/api/v1/apps/{app}/ps")
    formation = api_get(client, f"/api/v1/apps/{app}/formation")
    builds = api_get(client, f"/api/v1/apps/{app}/builds")[:10]
    live = next((r["version"] for r in releases if r["status"] == "live"), None)
    current = live if live is not None else (releases[0]["version"] if releases else None)
    return json.dumps(
        [
            f"v{current}" if current else "no release yet",
            [[f"v{r['version']}", r["status"]] for r in releases],
            sorted(
                [p["process"], f"v{p['release']}" if p["release"] else "—", p["state"]] for p in processes
            ),
            [[f["process"], f["replicas"]] for f in sorted(formation, key=lambda f: f["process"])],
            [[str(b["id"]), b["status"]] for b in builds],
        ],
        separators=(",", ":"),
    )


def follow(client: httpx.Client, app: str, done) -> list[tuple[float, float, str]]:
    """Read the API until `done()` and SETTLE seconds without change; the API's states as (first, last seen, state)."""
    segments: list[list] = []
    deadline = time.monotonic() + PHASE_TIMEOUT
    finished_at = None
    while time.monotonic() < deadline:
        started = time.time()
        try:
            state = api_state(client, app)
        except EngineBusy:
            time.sleep(SAMPLE_INTERVAL)  # no sample: what the platform says now is not known
            continue
        if segments and segments[-1][2] == state:
            segments[-1][1] = started
        else:
            segments.append([started, started, state])
        if finished_at is None and done():
            finished_at = started
        if finished_at is not None and started - max(segments[-1][0], finished_at) >= SETTLE:
            return [tuple(s) for s in segments]
        time.sleep(SAMPLE_INTERVAL)
    raise AssertionError(f"the platform did not settle within {PHASE_TIMEOUT}s: {segments[-1][2]}")


def lags(segments, page_states) -> list[dict]:
    """For each API state held at least STABLE seconds: how long after the API first said it the page showed it."""
    found = []
    for first, last, state in segments:
        if last - first < STABLE:
            continue
        shown_before = [s for t, s in page_states if t <= first]
        if shown_before and shown_before[-1] == state:
            lag = 0.0
        else:
            lag = next((t - first for t, s in page_states if t > first and s == state), None)
        found.append(
            {"state": state, "held": round(last - first, 2), "lag": None if lag is None else round(lag, 3)}
        )
    return found


def commit(repo: Path, message: str) -> None:
    write_hello_app(repo, message)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_the_app_page_matches_the_api_within_a_second_through_pushes_a_scale_and_a_rollback(
    page, repo, tenant, berth_platform
):
    app = tenant.app.name
    client = httpx.Client(
        base_url=berth_platform.web_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    )
    page.goto(f"/apps/{app}/")  # before the first push: nothing built, nothing released
    page.evaluate(RECORDER_JS, PAGE_STATE_JS)
    phases: dict[str, list] = {}

    def push(message: str) -> list:
        commit(repo, message)
        pushing = subprocess.Popen(
            ["git", "push", "-q", "berth", "main"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        segments = follow(client, app, lambda: pushing.poll() is not None)
        assert pushing.returncode == 0, pushing.stderr.read()
        return segments

    def released(version: int):
        def done() -> bool:
            releases = api_get(client, f"/api/v1/apps/{app}/releases")
            return any(r["version"] == version and r["status"] == "live" for r in releases)

        return done

    phases["first push"] = push("first")
    phases["second push"] = push("second")

    def scale(replicas: int) -> list:
        answer = client.patch(
            f"/api/v1/apps/{app}/formation", json=[{"process": "web", "replicas": replicas}]
        )
        assert answer.status_code == 200, answer.text

        def done() -> bool:
            try:
                rows = api_get(client, f"/api/v1/apps/{app}/ps")
            except EngineBusy:
                return False
            return len([r for r in rows if r["process"] == "web" and r["state"] == "running"]) == replicas

        return follow(client, app, done)

    phases["scale 1 -> 2"] = scale(2)
    phases["scale 2 -> 1"] = scale(1)

    # the router's switch: the first time the app's hostname answers with v1's ("first") page again
    switched: list[float] = []
    live_v3 = released(3)

    def rolled_back() -> bool:
        if not switched and get(berth_platform.router_port, f"{app}.localhost").text.strip() == "first":
            switched.append(time.time())
        return bool(switched) and live_v3()  # the router switches first; both seen before the phase ends

    answer = client.post(f"/api/v1/apps/{app}/rollback", json={"version": 1})
    assert answer.status_code in (200, 201), answer.text
    phases["rollback to v1 (as v3)"] = follow(client, app, rolled_back)

    page_states = page.evaluate("() => window.__berthStates")
    rollbacks = page.evaluate("() => window.__berthRollbacks")
    report = {name: lags(segments, page_states) for name, segments in phases.items()}
    v3_live_shown = next(t for t, s in page_states if ["v3", "live"] in json.loads(s)[1])
    report["router switch to v3 -> page shows v3 live"] = v3_live_shown - switched[0]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-state-lag.json").write_text(json.dumps(report, indent=1))
    for name, rows in report.items():
        print(name, [row["lag"] for row in rows] if isinstance(rows, list) else round(rows, 3))

    # the page ends where the platform ends, and got there without a reload
    assert page_states[-1][1] == phases["rollback to v1 (as v3)"][-1][2]
    final = json.loads(page_states[-1][1])
    assert final[0] == "v3" and [p[:2] for p in final[2]] == [["web", "v3"]], final
    for name in phases:
        late = [row for row in report[name] if row["lag"] is None or row["lag"] > LAG_LIMIT]
        assert not late, f"{name}: the page showed these states late or never: {late}"
    assert report["router switch to v3 -> page shows v3 live"] <= LAG_LIMIT, report
    # statuses change in one transition: never two releases live, never none live between superseded and live
    for _, shown in page_states:
        statuses = [status for _, status in json.loads(shown)[1]]
        assert statuses.count("live") <= 1, shown
        assert not ("live" not in statuses and "deploying" in statuses and "superseded" in statuses), shown
    assert not [r for r in rollbacks if r[1] in ("live", "deploying")], rollbacks
