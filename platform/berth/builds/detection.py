"""What a source tree asks of its buildpack: the runtime version and the package manager, read as Heroku reads them.

A buildpack's `buildpack.toml` names one stack; a plan may pick another one for the tree (Python 3.13 builds on the
trixie stack, 3.11 on bookworm's) and fill the template's extra placeholders (the package manager). Only reading
here, no Docker: the builder turns the plan into a build.
"""

import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from berth.builds import tree
from berth.builds.errors import BuildError

MAX_MANIFEST_BYTES = 256 * 1024
# The Pythons Berth's stacks hold (Debian's python3 of each suite): minor version → (stack variant, full version).
PYTHON_STACKS = {"3.11": ("base", (3, 11, 2)), "3.13": ("trixie", (3, 13, 5))}
DEFAULT_PYTHON = "3.11"
# Heroku's order: the first lockfile found names the package manager.
PYTHON_MANAGERS = (
    ("uv.lock", "uv"),
    ("poetry.lock", "poetry"),
    ("Pipfile.lock", "pipenv"),
    ("requirements.txt", "pip"),
    ("pyproject.toml", "pip"),
)
# the files the python buildpack's dependency stage copies (buildpacks/python/Dockerfile.template)
PYTHON_DEPENDENCY_FILES = (
    "requirements.txt",
    "pyproject.toml",
    "uv.lock",
    "poetry.lock",
    "Pipfile",
    "Pipfile.lock",
)
# what the node buildpack's dependency step copies before it installs (buildpacks/node/Dockerfile.template)
NODE_DEPENDENCY_FILES = (
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    ".npmrc",
    ".yarnrc.yml",
    "pnpm-workspace.yaml",
)
_MINOR = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+|\*))?$")
_CLAUSE = re.compile(r"^\s*(~=|===|==|!=|<=|>=|<|>)\s*([0-9][0-9.*]*)\s*$")


@dataclass(frozen=True)
class BuildPlan:
    """What the builder needs beyond the buildpack: the stacks to build and run on, the template's extra
    `{{placeholders}}`, and the lines the push shows before the engine starts."""

    stack: str
    run_stack: str
    values: dict[str, str] = field(default_factory=dict)
    steps: tuple[str, ...] = ()
    # The dependency stage may start from the app's last one (its environment already installed): the package
    # manager makes that environment exactly the lockfile's, removing what the lockfile no longer names.
    deps_reuse: bool = False
    # The app's image may start from its last one up to its dependencies (the run cache) and take only the files
    # that changed: the package manager leaves the files it keeps in place (npm ci writes every one anew)
    run_reuse: bool = False
    # the dependency files the tree has: another set (one added or deleted) starts the dependency stage cold
    deps_files: tuple[str, ...] = ()


def _read(source_dir: Path, name: str) -> str | None:
    # tree.TooLarge / tree.UnsafePath are BuildErrors that name the file
    return tree.read_text(source_dir, name, max_bytes=MAX_MANIFEST_BYTES, errors="replace")


def _toml(source_dir: Path, name: str) -> dict | None:
    text = _read(source_dir, name)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{name} is not valid TOML: {exc}") from None


def _available() -> str:
    return ", ".join(
        f"{minor} (Debian {'trixie' if stack == 'trixie' else 'bookworm'})"
        for minor, (stack, _) in PYTHON_STACKS.items()
    )


def _exact_minor(version: str, origin: str) -> str:
    match = _MINOR.match(version.strip())
    if not match:
        raise BuildError(
            f"{origin} asks for Python {version.strip()!r}, not a version like 3.13; available: {_available()}"
        )
    minor = f"{match[1]}.{match[2]}"
    if minor not in PYTHON_STACKS:
        raise BuildError(f"Python {minor} (from {origin}) is not available; available: {_available()}")
    return minor


def _satisfies(version: tuple[int, int, int], specifier: str) -> bool:
    """Whether `version` meets a PEP 440 specifier of plain release numbers (what requires-python holds)."""
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = _CLAUSE.match(clause)
        if not match:
            raise BuildError(f"requires-python {specifier!r} cannot be read (clause {clause!r})")
        op, text = match.groups()
        if text.endswith(".*"):
            prefix = tuple(int(p) for p in text[:-2].split("."))
            same = version[: len(prefix)] == prefix
            if (op == "==" and not same) or (op == "!=" and same):
                return False
            continue
        parts = [int(p) for p in text.split(".") if p]
        wanted = tuple((parts + [0, 0])[:3])
        if op == "~=":
            prefix = tuple(parts[:-1])
            if version < wanted or version[: len(prefix)] != prefix:
                return False
        elif not {
            "==": version == wanted,
            "===": version == wanted,
            "!=": version != wanted,
            "<=": version <= wanted,
            ">=": version >= wanted,
            "<": version < wanted,
            ">": version > wanted,
        }[op]:
            return False
    return True


def python_version(source_dir: Path) -> tuple[str, str]:
    """The Python minor version the tree asks for and where it says so: `.python-version`, `runtime.txt`
    (python-3.13.x), Pipfile's [requires] python_version, then pyproject's requires-python; else the default.
    BuildError, one line listing the available ones, when none of the stacks has it."""
    text = _read(source_dir, ".python-version")
    if text is not None:
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if lines:
            return _exact_minor(
                lines[0].removeprefix("python-").removeprefix("cpython-"), ".python-version"
            ), ".python-version"
    text = _read(source_dir, "runtime.txt")
    if text is not None and text.strip():
        value = text.strip()
        if not value.startswith("python-"):
            raise BuildError(f"runtime.txt says {value!r}; it should read like python-3.13.1")
        return _exact_minor(value.removeprefix("python-"), "runtime.txt"), "runtime.txt"
    pipfile = _toml(source_dir, "Pipfile")
    requires = (pipfile or {}).get("requires") or {}
    version = requires.get("python_full_version") or requires.get("python_version")
    if isinstance(version, str) and version:
        return _exact_minor(version, "Pipfile"), "Pipfile"
    pyproject = _toml(source_dir, "pyproject.toml")
    specifier = ((pyproject or {}).get("project") or {}).get("requires-python")
    if isinstance(specifier, str) and specifier.strip():
        candidates = [DEFAULT_PYTHON] + sorted(
            (m for m in PYTHON_STACKS if m != DEFAULT_PYTHON), reverse=True
        )
        for minor in candidates:
            if _satisfies(PYTHON_STACKS[minor][1], specifier):
                return minor, "requires-python"
        raise BuildError(
            f"no available Python meets requires-python {specifier.strip()!r}; available: {_available()}"
        )
    return DEFAULT_PYTHON, "default"


def python_manager(source_dir: Path) -> str:
    """The package manager, chosen by lockfile as Heroku's Python buildpack does."""
    for name, manager in PYTHON_MANAGERS:
        if tree.is_file(source_dir, name):
            return manager
    if tree.is_file(source_dir, "Pipfile"):
        raise BuildError("Pipfile has no Pipfile.lock: run `pipenv lock` and commit Pipfile.lock")
    raise BuildError("no requirements.txt, pyproject.toml, Pipfile.lock, poetry.lock or uv.lock found")


def deps_digest(source_dir: Path, names: tuple[str, ...]) -> str:
    """A short hash of the dependency files: the builder tells by it whether the app's cache was made from them."""
    digest = hashlib.sha256()
    for name in names:
        data = tree.read_bytes(source_dir, name, max_bytes=16 * MAX_MANIFEST_BYTES)
        digest.update(f"{name}\0{'-' if data is None else len(data)}\0".encode() + (data or b""))
    return digest.hexdigest()[:16]


# uv sync is exact (it uninstalls what uv.lock no longer names); pip, pipenv and `poetry install` only add
# packages, so those start from a fresh venv.
PYTHON_EXACT_MANAGERS = ("uv",)


def deps_files(source_dir: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of the dependency files `names` the tree has."""
    return tuple(name for name in names if tree.is_file(source_dir, name))


def _python_plan(source_dir: Path, stack: str, run_stack: str, config: dict[str, str]) -> BuildPlan:
    minor, origin = python_version(source_dir)
    manager = python_manager(source_dir)
    if manager == "pipenv":
        try:
            json.loads(_read(source_dir, "Pipfile.lock") or "")
        except ValueError:
            raise BuildError(
                "Pipfile.lock is not valid JSON: run `pipenv lock` and commit it again"
            ) from None
    python_stack = PYTHON_STACKS[minor][0]
    said = "" if origin == "default" else f" (from {origin})"
    disable = (config.get("DISABLE_COLLECTSTATIC") or "").strip().lower() in ("1", "true", "yes", "on")
    return BuildPlan(
        stack=python_stack,
        run_stack=python_stack,
        values={
            "python_manager": manager,
            "disable_collectstatic": "1" if disable else "0",
            "deps_digest": deps_digest(source_dir, PYTHON_DEPENDENCY_FILES),
        },
        steps=(f"-----> Installing Python {minor}{said}",),
        deps_reuse=manager in PYTHON_EXACT_MANAGERS,
        deps_files=deps_files(source_dir, PYTHON_DEPENDENCY_FILES),
    )


# engines.node as npm reads a semver range: digits, x, *, dots, operators, spaces and || (never a shell character)
_NODE_RANGE = re.compile(r"[0-9xX*.^~<>=| -]{1,64}")
_PACKAGE_MANAGER = re.compile(r"^(npm|pnpm|yarn)@(\d+)")


def node_manager(source_dir: Path, package: dict) -> str:
    """npm, pnpm, yarn (1) or yarn-berry (2+): package.json's packageManager first, else the lockfile, as Heroku."""
    declared = package.get("packageManager")
    if isinstance(declared, str) and declared.strip():
        match = _PACKAGE_MANAGER.match(declared.strip())
        if not match:
            raise BuildError(
                f"package.json's packageManager {declared.strip()!r} is not npm@…, pnpm@… or yarn@…"
            )
        name, major = match[1], int(match[2])
        return "yarn-berry" if name == "yarn" and major >= 2 else name
    if tree.is_file(source_dir, "pnpm-lock.yaml"):
        return "pnpm"
    if tree.is_file(source_dir, "yarn.lock"):
        lock = _read(source_dir, "yarn.lock") or ""
        return "yarn-berry" if "__metadata:" in lock else "yarn"
    return "npm"


def _node_plan(source_dir: Path, stack: str, run_stack: str, config: dict[str, str]) -> BuildPlan:
    text = _read(source_dir, "package.json") or "{}"
    try:
        package = json.loads(text)
    except ValueError as exc:
        raise BuildError(f"package.json is not valid JSON: {exc}") from None
    if not isinstance(package, dict):
        raise BuildError("package.json is not a JSON object")
    engines = package.get("engines") or {}
    version = engines.get("node", "") if isinstance(engines, dict) else ""
    if not isinstance(version, str) or (version.strip() and not _NODE_RANGE.fullmatch(version.strip())):
        raise BuildError(f"package.json's engines.node {version!r} is not a version range like 22.x or >=20")
    version = version.strip()
    manager = node_manager(source_dir, package)
    return BuildPlan(
        stack=stack,
        run_stack=run_stack,
        values={
            "node_version": json.dumps(version),
            "node_manager": manager,
            "deps_digest": deps_digest(source_dir, NODE_DEPENDENCY_FILES),
        },
        # npm ci starts node_modules afresh; npm install, pnpm and yarn (1 and 2+) remove what the lockfile
        # no longer has
        deps_reuse=True,
        run_reuse=manager != "npm",
        deps_files=deps_files(source_dir, NODE_DEPENDENCY_FILES),
    )


# The Go of the go stack (Debian bookworm's golang-go): a go.mod asking for a newer language cannot build on it.
STACK_GO = (1, 19)
_GO_LINE = re.compile(r"^go\s+(\d+)\.(\d+)(?:\.\d+)?\s*(?://.*)?$", re.MULTILINE)


def _go_plan(source_dir: Path, stack: str, run_stack: str, config: dict[str, str]) -> BuildPlan:
    text = _read(source_dir, "go.mod") or ""
    match = _GO_LINE.search(text)
    steps = []
    if match:
        wanted = (int(match[1]), int(match[2]))
        have = ".".join(map(str, STACK_GO))
        if wanted > STACK_GO:
            raise BuildError(
                f"go.mod asks for Go {wanted[0]}.{wanted[1]}; the go stack has Go {have} (Debian bookworm): "
                f"lower the go line to {have} or build with a Dockerfile"
            )
        steps.append(f"-----> Using Go {have} (go.mod: go {wanted[0]}.{wanted[1]})")
    # vendor/modules.txt: the modules are in the tree, so the build neither downloads nor reaches a proxy
    vendored = tree.is_file(source_dir, "vendor/modules.txt")
    if vendored:
        steps.append("-----> Building with the vendored modules (vendor/), offline")
    return BuildPlan(
        stack=stack,
        run_stack=run_stack,
        values={
            "go_vendored": "1" if vendored else "0",
            "deps_digest": deps_digest(source_dir, ("go.mod", "go.sum")),
        },
        steps=tuple(steps),
    )


_PLANNERS: dict[str, Callable[[Path, str, str, dict[str, str]], BuildPlan]] = {
    "python": _python_plan,
    "node": _node_plan,
    "go": _go_plan,
}


def build_plan(
    *, name: str, stack: str, run_stack: str, source_dir: Path, config: dict[str, str]
) -> BuildPlan:
    """The plan for building `source_dir` with the buildpack `name` (declared on `stack`/`run_stack`), given the
    app's config vars. Buildpacks without a planner build as declared. BuildError says what the tree gets wrong."""
    planner = _PLANNERS.get(name)
    if planner is None:
        return BuildPlan(stack=stack, run_stack=run_stack)
    return planner(Path(source_dir), stack, run_stack, config)
