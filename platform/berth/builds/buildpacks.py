"""The buildpack registry: `buildpacks/<name>/` holds a detect rule and a Dockerfile template each.

Buildpacks are data: `buildpack.toml` declares the name, a priority (lower is tried first), a detect rule, the
stack variant to build FROM and the default web command; `Dockerfile.template` is rendered with a few
`{{placeholders}}` (Dockerfiles use `$VAR` themselves, so `string.Template`'s `$` would collide).
"""

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

    @property
    def template_path(self) -> Path:
        return self.directory / "Dockerfile.template"

    @property
    def files_dir(self) -> Path:
        """Files the template may COPY from berth/files/ (e.g. the static site's start script)."""
        return self.directory / "files"

    @property
    def stacks(self) -> tuple[str, ...]:
        """Every stack variant the build needs, build stack first."""
        return tuple(dict.fromkeys((self.stack, self.run_stack)))

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


def detect(source_dir: Path, override: str | None = None, *, directory: Path | None = None) -> Buildpack:
    """The buildpack for a source tree: the one named by `override` (an app setting), else the one app.json names,
    else the first that detects. An app.json Berth cannot use is refused (BuildError naming the field) either way."""
    manifest = manifest_read(Path(source_dir))
    if override:
        return get_buildpack(override, directory=directory)
    if manifest is not None and manifest.buildpacks:
        return get_buildpack(manifest.buildpacks[-1], directory=directory)
    for buildpack in load_buildpacks(directory):
        if buildpack.detects(Path(source_dir)):
            return buildpack
    raise BuildError(NOTHING_DETECTED)


def web_command_cmd(command: str) -> str:
    """The Dockerfile CMD (exec form) that runs a Procfile-style command line."""
    return json.dumps(command_args(command))


def plan_for(buildpack: Buildpack, source_dir: Path, config: dict[str, str] | None = None) -> BuildPlan:
    """What the tree asks of `buildpack` (berth.builds.detection): the stacks, the template's extra values."""
    return build_plan(
        name=buildpack.name,
        stack=buildpack.stack,
        run_stack=buildpack.run_stack,
        source_dir=Path(source_dir),
        config=config or {},
    )


def render_dockerfile(
    buildpack: Buildpack,
    source_dir: Path,
    *,
    stack_image: str,
    run_image: str | None = None,
    plan: BuildPlan | None = None,
    cache_image: str | None = None,
    cache_ref: str = "",
) -> str:
    """The Dockerfile for building `source_dir` with `buildpack`, FROM `stack_image` (and `run_image` when the
    buildpack runs on another stack than it builds on; by default the local stack image of that variant).
    `plan` (default: the tree's plan with no config vars) fills the buildpack's own placeholders. `cache_image` is
    the app's dependency cache (its last build's dependency stage; by default none: the stack image), `cache_ref`
    the tag the new dependency stage gets (written into its label, so that no two apps' stages are one image)."""
    source_dir = Path(source_dir)
    template = buildpack.template_path.read_text()
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
        "cache_from": "app" if cache_image else "stack",
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
            raise BuildError(f"{buildpack.template_path}: unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, template)
