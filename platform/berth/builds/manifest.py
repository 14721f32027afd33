"""app.json, Heroku's app manifest, where it applies to Berth: read and checked before anything is built.

Read: `buildpacks` (which buildpack builds the app, Heroku's names mapped to Berth's; two chain: node then static),
`scripts.postdeploy` (a one-off after the app's first deploy), `formation` (process type → quantity, size: the first
release's), `healthchecks` (Dokku's startup checks of web, run before the cut-over) and Berth's own `cron`
(scheduled jobs, kept by berth.jobs once the release is live). A push with an
app.json Berth cannot use fails in one line naming the field, never half-read.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from berth.builds import tree
from berth.builds.errors import BuildError
from berth.core.cron import CronError, cron_parse

MAX_MANIFEST_BYTES = 256 * 1024
MAX_QUANTITY = 100
MAX_CHECKS = 10
MAX_CHAIN = (
    2  # buildpacks in app.json: the one that makes the image that runs, and at most one building before it
)
# Heroku's buildpack names (and Berth's own) → the Berth buildpack that builds that way
BUILDPACK_NAMES = {
    "heroku/python": "python",
    "heroku/nodejs": "node",
    "heroku/go": "go",
    "heroku-community/static": "static",
    "python": "python",
    "node": "node",
    "go": "go",
    "static": "static",
    "dockerfile": "dockerfile",
}
_PROCESS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass(frozen=True)
class AppManifest:
    """What app.json asks of Berth, checked."""

    buildpacks: tuple[str, ...] = ()
    postdeploy: str = ""
    formation: dict[str, dict] = field(default_factory=dict)
    # process type → its startup checks (only web's run: the health-gated cut-over, berth.deploys.rollout)
    healthchecks: dict[str, list[dict]] = field(default_factory=dict)
    # the scheduled jobs the app declares (berth.jobs keeps exactly these as its manifest jobs); None: no `cron` key,
    # the jobs made from an earlier app.json stay as they are
    cron: tuple[dict, ...] | None = None


def _fail(problem: str) -> BuildError:
    return BuildError(f"app.json: {problem}")


def _process_name(name: str, where: str) -> None:
    if not name or len(name) > 30 or any(c not in _PROCESS for c in name):
        raise _fail(f"{where} {name!r} is not a process type (lowercase letters, digits, - and _)")


def _buildpacks(value) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail('buildpacks must be a list of {"url": …}')
    names = []
    for number, entry in enumerate(value):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise _fail(f"buildpacks[{number}] must be an object with a url")
        if url not in BUILDPACK_NAMES:
            known = ", ".join(sorted(n for n in BUILDPACK_NAMES if "/" in n))
            raise _fail(f"buildpacks[{number}].url {url!r} is not one Berth has; Berth has {known}")
        names.append(BUILDPACK_NAMES[url])
    if len(names) > MAX_CHAIN:
        raise _fail(
            f"buildpacks lists {len(names)}; Berth chains at most {MAX_CHAIN}: one that builds (heroku/nodejs) and "
            "one that runs its output (heroku-community/static)"
        )
    return tuple(names)


def _formation(value) -> dict[str, dict]:
    if not isinstance(value, dict):
        raise _fail('formation must be an object of process type → {"quantity": …, "size": …}')
    formation = {}
    for process, spec in value.items():
        _process_name(process, "formation key")
        if not isinstance(spec, dict):
            raise _fail(f"formation.{process} must be an object")
        quantity = spec.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_QUANTITY:
            raise _fail(f"formation.{process}.quantity must be a whole number from 0 to {MAX_QUANTITY}")
        size = spec.get("size", "")
        if not isinstance(size, str):
            raise _fail(f"formation.{process}.size must be a string")
        formation[process] = {"quantity": quantity, "size": size}
    return formation


# Dokku's app.json healthchecks: each process type's list of checks; Berth runs the startup ones (an HTTP GET on the
# new web tasks before traffic moves to them). Defaults are Dokku's.
CHECK_DEFAULTS = {"attempts": 5, "timeout": 5, "wait": 5, "initialDelay": 0}
CHECK_LIMITS = {"attempts": (1, 100), "timeout": (1, 300), "wait": (0, 300), "initialDelay": (0, 600)}
CHECK_KEYS = {"type", "name", "path", "content", *CHECK_DEFAULTS}


def _check(spec, where: str) -> dict:
    if not isinstance(spec, dict):
        raise _fail(f'{where} must be an object like {{"type": "startup", "path": "/ready"}}')
    unknown = sorted(set(spec) - CHECK_KEYS)
    if unknown:
        # `command`, `port`, `scheme`, … are Dokku's too, but Berth does not run them: refused, never ignored
        raise _fail(
            f"{where}.{unknown[0]} is not a check field Berth runs; it runs {', '.join(sorted(CHECK_KEYS))}"
        )
    kind = spec.get("type", "startup")
    if kind != "startup":
        raise _fail(
            f"{where}.type {kind!r} is not one Berth runs; it runs startup checks (before the cut-over)"
        )
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 512 or not path.isprintable():
        raise _fail(f"{where}.path must be a path starting with /")
    check = {"type": "startup", "path": path}
    for key, default in CHECK_DEFAULTS.items():
        value = spec.get(key, default)
        low, high = CHECK_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise _fail(
                f"{where}.{key} must be a number of {'tries' if key == 'attempts' else 'seconds'} from {low} to {high}"
            )
        if key == "attempts" and value != int(value):
            raise _fail(f"{where}.attempts must be a whole number from {low} to {high}")
        check[key] = int(value) if key == "attempts" else value
    for key in ("name", "content"):
        value = spec.get(key, "")
        if not isinstance(value, str) or len(value) > 512:
            raise _fail(f"{where}.{key} must be a string (at most 512 characters)")
        check[key] = value
    return check


def _healthchecks(value) -> dict[str, list[dict]]:
    """Dokku's form, `{"web": [{"type": "startup", "path": "/ready", "attempts": 5, "timeout": 5}]}`; the older
    `{"web": {"path": "/", "timeout": 5}}` reads as one startup check."""
    if not isinstance(value, dict):
        raise _fail('healthchecks must be an object of process type → [{"type": "startup", "path": "/…"}]')
    checks = {}
    for process, specs in value.items():
        _process_name(process, "healthchecks key")
        if isinstance(specs, dict):
            checks[process] = [_check(specs, f"healthchecks.{process}")]
            continue
        if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_CHECKS:
            raise _fail(f"healthchecks.{process} must be a list of 1 to {MAX_CHECKS} checks")
        checks[process] = [_check(spec, f"healthchecks.{process}[{n}]") for n, spec in enumerate(specs)]
    if set(checks) - {"web"}:
        # only web answers HTTP on $PORT: a check of another process type could never pass
        raise _fail(
            f"healthchecks.{sorted(set(checks) - {'web'})[0]}: Berth checks web only (the one answering on $PORT)"
        )
    return checks


MAX_CRON_JOBS = 20
MAX_CRON_COMMAND = 8192


def _cron(value) -> tuple[dict, ...]:
    """Berth's addition to app.json: `"cron": [{"schedule": "*/15 * * * *", "command": "…", "allow_overlap": false}]`,
    schedules in UTC, checked here so a bad one fails the push, not the job later."""
    if not isinstance(value, list) or len(value) > MAX_CRON_JOBS:
        raise _fail(f'cron must be a list of at most {MAX_CRON_JOBS} {{"schedule": …, "command": …}}')
    jobs = []
    for number, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) - {"schedule", "command", "allow_overlap"}:
            raise _fail(f"cron[{number}] must be an object of schedule, command and allow_overlap")
        schedule, command = entry.get("schedule"), entry.get("command")
        if not isinstance(schedule, str):
            raise _fail(f"cron[{number}].schedule must be a cron expression (UTC)")
        try:
            schedule = cron_parse(schedule).expression
        except CronError as exc:
            raise _fail(f"cron[{number}].schedule: {exc}") from None
        if (
            not isinstance(command, str)
            or not command.strip()
            or len(command) > MAX_CRON_COMMAND
            or "\x00" in command
        ):
            raise _fail(f"cron[{number}].command must be a command line of 1-{MAX_CRON_COMMAND} characters")
        overlap = entry.get("allow_overlap", False)
        if not isinstance(overlap, bool):
            raise _fail(f"cron[{number}].allow_overlap must be true or false")
        jobs.append({"schedule": schedule, "command": command.strip(), "allow_overlap": overlap})
    return tuple(jobs)


def manifest_read(source_dir: Path) -> AppManifest | None:
    """The tree's app.json, checked (None without one); BuildError names the first field Berth cannot use."""
    text = tree.read_text(Path(source_dir), "app.json", max_bytes=MAX_MANIFEST_BYTES, errors="replace")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _fail(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail("must be a JSON object")
    scripts = data.get("scripts", {})
    if not isinstance(scripts, dict):
        raise _fail("scripts must be an object")
    postdeploy = scripts.get("postdeploy", "")
    if not isinstance(postdeploy, str):
        raise _fail("scripts.postdeploy must be a command line (a string)")
    return AppManifest(
        buildpacks=_buildpacks(data["buildpacks"]) if "buildpacks" in data else (),
        postdeploy=postdeploy.strip(),
        formation=_formation(data["formation"]) if "formation" in data else {},
        cron=_cron(data["cron"]) if "cron" in data else None,
        healthchecks=_healthchecks(data["healthchecks"]) if "healthchecks" in data else {},
    )
