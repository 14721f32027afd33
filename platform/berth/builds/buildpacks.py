"""The buildpack registry: `buildpacks/<name>/` holds a detect rule and a Dockerfile template each.

Buildpacks are data: `buildpack.toml` declares the name, a priority (lower is tried first), a detect rule, the
stack variant to build FROM and the default web command; `Dockerfile.template` is rendered with a few
`{{placeholders}}` (Dockerfiles use `$VAR` themselves, so `string.Template`'s `$` would collide).

Chaining (app.json's `"buildpacks": [{"url": "heroku/nodejs"}, {"url": "heroku-community/static"}]`): the last
buildpack makes the image that runs, the one before it builds. The last one says which it can follow with a
`Dockerfile.after-<name>.template`: the earlier buildpack's build stages are rendered first (its template up to its
last FROM), then that file, which may continue the earlier stage and copies what it needs from it.
"""

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from berth.builds import tree
from berth.builds.detection import BuildPlan, build_plan
from berth.builds.errors import BuildError
from berth.builds.manifest import manifest_read
from berth.builds.stack import VARIANTS, stack_image_ref
from berth.runtime.scheduler import command_args

DEFAULT_PORT = 5000
NOTHING_DETECTED = (
    "no buildpack detected: add a requirements.txt, package.json, go.mod, index.html or Dockerfile"
)
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")  # fullmatch: `$` accepts a trailing newline
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_CONTEXTS = ("wrapped", "repository")
_KIND_NAMES = {str: "a string", int: "an integer", dict: "a table"}
# Docker's own limit for a Dockerfile is far above any real one; this keeps a tenant's file out of memory.
MAX_DOCKERFILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Buildpack:
    """One way of turning a source tree into an image.

    `context` is "wrapped" (the build context holds the source under app/, plus Berth's files under berth/)
    or "repository" (the source tree itself is the context, for the repository's own Dockerfile).
    """

    name: str
    display_name: str
    priority: int
    detect_any_file: tuple[str, ...]
    stack: str
    run_stack: str
    default_web_command: str
    directory: Path
    context: str = "wrapped"
    exclude: tuple[str, ...] = ()
    # chaining (buildpack_chain): the buildpacks as loaded, in the order they build; empty for one on its own
    chained: tuple["Buildpack", ...] = ()

    @property
    def template_path(self) -> Path:
        return self.directory / "Dockerfile.template"

    def after_template_path(self, previous: str) -> Path:
        """The template that follows buildpack `previous`'s build stages when chained after it."""
        return self.directory / f"Dockerfile.after-{previous}.template"

    @property
    def files_dir(self) -> Path:
        """Files the template may COPY from berth/files/ (e.g. the static site's start script)."""
        return self.directory / "files"

    @property
    def chain(self) -> tuple["Buildpack", ...]:
        """The buildpacks that build, in order (this one alone when not chained)."""
        return self.chained or (self,)

    @property
    def before(self) -> tuple["Buildpack", ...]:
        """The buildpacks chained before the last one, whose template makes the image that runs."""
        return self.chain[:-1]

    @property
    def stacks(self) -> tuple[str, ...]:
        """Every stack variant the build needs, build stack first."""
        return tuple(dict.fromkeys(v for b in self.chain for v in (b.stack, b.run_stack)))

    def detects(self, source_dir: Path) -> bool:
        """Whether the tree holds one of the detect files (a link out of the tree is refused: tree.UnsafePath)."""
        return any(tree.is_file(source_dir, name) for name in self.detect_any_file)


def _load_one(directory: Path) -> Buildpack:
    path = directory / "buildpack.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"buildpack {path} cannot be read: {exc}") from exc

    def need(key: str, kind: type):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BuildError(f"buildpack {path}: `{key}` must be {_KIND_NAMES[kind]}")
        return value

    name = need("name", str)
    if not _NAME.fullmatch(name) or name != directory.name:
        raise BuildError(f"buildpack {path}: name {name!r} must match its folder and ^[a-z0-9-]+$")
    detect = need("detect", dict)
    any_file = detect.get("any_file")
    if not any_file or not all(isinstance(f, str) and f for f in any_file):
        raise BuildError(f"buildpack {path}: `detect.any_file` must list at least one file name")
    stack = need("stack", str)
    run_stack = data.get("run_stack", stack)
    for variant in (stack, run_stack):
        if variant not in VARIANTS:
            raise BuildError(f"buildpack {path}: unknown stack {variant!r}; known: {', '.join(VARIANTS)}")
    context = data.get("context", "wrapped")
    if context not in _CONTEXTS:
        raise BuildError(f"buildpack {path}: `context` must be one of {', '.join(_CONTEXTS)}")
    buildpack = Buildpack(
        name=name,
        display_name=data.get("display_name", name),
        priority=need("priority", int),
        detect_any_file=tuple(any_file),
        stack=stack,
        run_stack=run_stack,
        default_web_command=need("default_web_command", str),
        directory=directory,
        context=context,
        exclude=tuple(data.get("exclude", ())),
    )
    if not buildpack.template_path.is_file():
        raise BuildError(f"buildpack {directory} has no Dockerfile.template")
    return buildpack


def load_buildpacks(directory: Path | None = None) -> list[Buildpack]:
    """All buildpacks under BERTH_BUILDPACKS_DIR, in the order detection tries them (priority, then name)."""
    root = Path(directory or settings.BERTH_BUILDPACKS_DIR)
    buildpacks = [_load_one(path.parent) for path in sorted(root.glob("*/buildpack.toml"))]
    if not buildpacks:
        raise BuildError(f"no buildpacks found in {root}")
    return sorted(buildpacks, key=lambda b: (b.priority, b.name))


def get_buildpack(name: str, *, directory: Path | None = None) -> Buildpack:
    buildpacks = load_buildpacks(directory)
    for buildpack in buildpacks:
        if buildpack.name == name:
            return buildpack
    known = ", ".join(b.name for b in buildpacks)
    raise BuildError(f"unknown buildpack {name!r}; known buildpacks: {known}")


def buildpack_chain(names: tuple[str, ...], *, directory: Path | None = None) -> Buildpack:
    """The buildpack that builds with `names` in order: the one named alone, or the last one chained after the one
    before it (its `before`). BuildError, naming app.json's field, when the last cannot follow the one before."""
    buildpacks = [get_buildpack(name, directory=directory) for name in names]
    if len(buildpacks) == 1:
        return buildpacks[0]
    first, last = buildpacks  # app.json's reader allows at most two
    if (
        first.context != "wrapped"
        or last.context != "wrapped"
        or not last.after_template_path(first.name).is_file()
    ):
        known = load_buildpacks(directory)
        chains = [
            f"{previous.name} then {b.name}"
            for b in known
            for previous in known
            if b.after_template_path(previous.name).is_file()
        ]
        raise BuildError(
            f"app.json: buildpacks: {last.name} cannot follow {first.name}; Berth chains "
            + (", ".join(chains) or "no buildpacks")
        )
    return dataclasses.replace(
        last,
        name=f"{first.name}+{last.name}",
        display_name=f"{first.display_name}, then {last.display_name}",
        exclude=tuple(dict.fromkeys((*first.exclude, *last.exclude))),
        chained=(first, last),
    )


def detect(source_dir: Path, override: str | None = None, *, directory: Path | None = None) -> Buildpack:
    """The buildpack for a source tree: the one named by `override` (an app setting), else the one app.json names
    (a chain of two: see buildpack_chain), else the first that detects. An app.json Berth cannot use is refused
    (BuildError naming the field) either way."""
    manifest = manifest_read(Path(source_dir))
    if override:
        return get_buildpack(override, directory=directory)
    if manifest is not None and manifest.buildpacks:
        return buildpack_chain(manifest.buildpacks, directory=directory)
    for buildpack in load_buildpacks(directory):
        if buildpack.detects(Path(source_dir)):
            return buildpack
    raise BuildError(NOTHING_DETECTED)


def web_command_cmd(command: str) -> str:
    """The Dockerfile CMD (exec form) that runs a Procfile-style command line."""
    return json.dumps(command_args(command))


def plan_for(buildpack: Buildpack, source_dir: Path, config: dict[str, str] | None = None) -> BuildPlan:
    """What the tree asks of `buildpack` (berth.builds.detection): the stacks, the template's extra values. A
    chain builds on its first buildpack's stack, runs on its last one's, and has every planner's values and steps."""
    plans = [
        build_plan(
            name=b.name,
            stack=b.stack,
            run_stack=b.run_stack,
            source_dir=Path(source_dir),
            config=config or {},
        )
        for b in buildpack.chain
    ]
    if len(plans) == 1:
        return plans[0]
    return BuildPlan(
        stack=plans[0].stack,
        run_stack=plans[-1].run_stack,
        values={key: value for plan in plans for key, value in plan.values.items()},
        steps=tuple(step for plan in plans for step in plan.steps),
    )


_FROM_LINE = re.compile(r"^FROM\s", re.MULTILINE | re.IGNORECASE)


def template_text(buildpack: Buildpack) -> str:
    """The Dockerfile template of `buildpack`; chained, the build stages of the one before (its template up to its
    last FROM) followed by this one's template for following it."""
    if not buildpack.before:
        return buildpack.template_path.read_text()
    previous = buildpack.before[-1]
    earlier = previous.template_path.read_text()
    froms = list(_FROM_LINE.finditer(earlier))
    if len(froms) < 2:
        raise BuildError(f"{previous.template_path} has no build stage to chain after (one FROM only)")
    return earlier[: froms[-1].start()] + buildpack.after_template_path(previous.name).read_text()


def render_dockerfile(
    buildpack: Buildpack,
    source_dir: Path,
    *,
    stack_image: str,
    run_image: str | None = None,
    plan: BuildPlan | None = None,
    cache_image: str | None = None,
    cache_ref: str = "",
    deps_base: str | None = None,
    cache_key: str = "",
    cache_base_size: int = 0,
    run_ref: str = "",
    run_base: str | None = None,
    run_base_size: int = 0,
) -> str:
    """The Dockerfile for building `source_dir` with `buildpack`, FROM `stack_image` (and `run_image` when the
    buildpack runs on another stack than it builds on; by default the local stack image of that variant).
    `plan` (default: the tree's plan with no config vars) fills the buildpack's own placeholders. `cache_image` is
    the image whose download caches (/berth-cache) the dependency stage copies (by default none: the stack
    image), `deps_base` the image the dependency stage starts FROM (the app's last dependency stage, its
    environment installed; by default none: a fresh one made in the template's `fresh` stage), `cache_ref` the tag
    the new dependency stage gets (written into its label, so that no two apps' stages are one image), and
    `cache_key` / `cache_base_size` its labels saying what it was built on and where its chain of stages began.
    `run_base` is the image the app's image starts FROM (its last one up to its dependencies, the run cache tagged
    `run_ref`; by default none: the template's `runtime` stage), `run_base_size` its chain's label as above."""
    source_dir = Path(source_dir)
    template = template_text(buildpack)
    if plan is None:
        plan = plan_for(buildpack, source_dir)
    if run_image is None:
        run_image = stack_image if plan.run_stack == plan.stack else stack_image_ref(plan.run_stack)
    values = {
        **plan.values,
        "stack_image": stack_image,
        "cache_image": cache_image or stack_image,
        "cache_max_mb": str(settings.BERTH_BUILD_CACHE_MB),
        "cache_ref": json.dumps(cache_ref or "none"),
        "cache_from": "app" if cache_image or deps_base else "stack",
        "deps_base": deps_base or "fresh",
        "cache_key": cache_key or "none",
        "cache_base_size": str(cache_base_size),
        "run_ref": json.dumps(run_ref or "none"),
        "run_base": run_base or "runtime",
        "run_base_size": str(run_base_size),
        "run_image": run_image,
        "port": str(DEFAULT_PORT),
        "cmd": web_command_cmd(buildpack.default_web_command) if buildpack.default_web_command else "[]",
    }

    def substitute(match: re.Match) -> str:
        key = match.group(1)
        if key == "source_dockerfile":
            try:
                text = tree.read_text(source_dir, "Dockerfile", max_bytes=MAX_DOCKERFILE_BYTES)
            except UnicodeDecodeError as exc:
                raise BuildError(
                    f"the repository's Dockerfile is not UTF-8 text (at byte {exc.start})"
                ) from None
            if text is None:
                raise BuildError("the repository has no Dockerfile")
            return text
        if key not in values:
            raise BuildError(f"{buildpack.name}'s Dockerfile template: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)
