"""The image builder: a source tree plus a buildpack become an image, its output streamed line by line.

It renders the buildpack's Dockerfile, packs the build context itself (the source under app/, Berth's files
under berth/: the proxy's CA bundle and the buildpack's helper files) and has the container engine build it
(berth.runtime.build), so every line reaches `on_line` as the engine prints it. The builder owns the deadline
and the words of every failure; the engine stops its build on timeout or cancellation.
"""

import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

from berth.builds import tree
from berth.builds.buildpacks import Buildpack, plan_for, render_dockerfile, template_text
from berth.builds.detection import BuildPlan
from berth.builds.errors import BuildCancelled, BuildError
from berth.builds.stack import StackBuildError, stack_build, stack_image_ref, stack_is_current
from berth.runtime.build import (
    STEP_LINE,
    BuildRefused,
    BuildRun,
    EngineLost,
    context_files,
    engine_cpus,
    image_build,
    image_tag,
)
from berth.runtime.pull import image_inspect
from berth.runtime.scheduler import installation_labels

BUILDPACK_LABEL = "org.berth.buildpack"
# a label's key or value that a LABEL instruction takes as it is: no quote, escape, variable ($) or line break
LABEL_WORD = re.compile(r"[\w.:/@+-]*")
CONTEXT_CA_PATH = "berth/ca.crt"
# Never sent to the engine: the repository's history is not part of the app (git archive leaves it out too).
ALWAYS_EXCLUDED = (".git",)
MAX_DOCKERIGNORE_BYTES = 1024 * 1024
OOM_EXIT_CODE = 137  # a step SIGKILLed: by the kernel's OOM killer when it reaches the build's memory limit
_NON_ZERO = re.compile(r"returned a non-zero code: (\d+)\s*$")
# The legacy builder's own bookkeeping: the layer ids, the containers it removes, its closing lines. A Berth step
# ("-----> …") and the tools' own lines say what happens; these stay in the build's full log only.
_ENGINE_NOISE = re.compile(
    r"^( ---> |Removing intermediate container |Successfully built [0-9a-f]+$|Successfully tagged )"
)
STEP_PREFIX = "-----> "
# A buildpack template marks the end of its dependency stage with this label; its image becomes the app's cache.
CACHE_STAGE_LABEL = "org.berth.cache-stage"
CACHE_DEPS_LABEL = "org.berth.cache-deps"  # the hash of the dependency files the cache's own build installed
CACHE_FROM_LABEL = "org.berth.cache-from"  # "stack": that build started from no cache; "app": from the app's
# what the stage was built on (stack image, buildpack, its files, package manager and versions, which dependency
# files): a cache built on anything else is never installed on, the dependency stage starts cold
CACHE_KEY_LABEL = "org.berth.cache-key"
# the size (bytes) of the cold stage a chain of stages, each installed on the one before, began from (0: this
# stage is that cold one): what the chain grew by is bounded by BERTH_BUILD_CACHE_MB
CACHE_BASE_SIZE_LABEL = "org.berth.cache-base-size"
# the app's run cache (buildpacks whose template marks a stage of the app's image with it, e.g. Node.js): that image
# up to its dependencies, tagged so that the next build's image starts FROM it and adds only what changed
RUN_STAGE_LABEL = "org.berth.run-stage"
# Each build installed on the last one adds its layers (about four) to the cache image; overlay2 refuses an image
# of more than 125, so past this many the dependency stage starts cold again.
MAX_CACHE_LAYERS = 100
# The run cache's chain is the app's image, pulled by every node that runs it: past this many layers, or grown by
# more than a quarter of the size it started at (node_modules removed or replaced stay in the layers below), the
# app's image starts from the template's `runtime` again.
MAX_RUN_LAYERS = 40
MAX_RUN_GROWTH = 0.25
_LAYER_ID = re.compile(r"^ ---> [0-9a-f]{12}$")


class BuildOutputFilter:
    """Splits the engine's lines into what the pusher reads (`on_line`) and the engine's noise (`on_detail`, the
    full log only), and remembers the last Berth step a buildpack script printed, to name it when a step fails.

    A `Step n/m : …` line is noise for a buildpack's own Dockerfile (Berth prints its steps itself) but shown for
    the repository's Dockerfile, whose instructions are the app's own."""

    def __init__(
        self,
        on_line: Callable[..., None],
        on_detail: Callable[[str], None] | None,
        *,
        steps_are_noise: bool,
    ):
        self.on_line = on_line
        self.on_detail = on_detail
        self.steps_are_noise = steps_are_noise
        self.last_step = ""
        # the images the engine made at the template's `LABEL org.berth.cache-stage` / `org.berth.run-stage`
        self.stage_images: dict[str, str] = {}
        self._stage_step = ""

    def is_noise(self, line: str) -> bool:
        return bool(_ENGINE_NOISE.match(line)) or (self.steps_are_noise and bool(STEP_LINE.match(line)))

    def __call__(self, line: str, *, more: bool = False) -> None:
        if more:
            self.on_line(line, more=True)
            return
        if line.startswith(STEP_PREFIX):
            self.last_step = line.removeprefix(STEP_PREFIX).strip()
        step = STEP_LINE.match(line)
        if step:
            self._stage_step = next(
                (
                    label
                    for label in (CACHE_STAGE_LABEL, RUN_STAGE_LABEL)
                    if step.group(3).startswith(f"LABEL {label}=")
                ),
                "",
            )
        elif self._stage_step and _LAYER_ID.match(line):
            self.stage_images[self._stage_step] = line.removeprefix(" ---> ")
        if self.on_detail is not None and self.is_noise(line):
            self.on_detail(line)
        else:
            self.on_line(line)


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tag: str
    duration: float
    buildpack: Buildpack


def labels_in_dockerfile(dockerfile: str, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Berth's template `dockerfile` setting `labels` on its image in one LABEL step, and the labels left for the
    engine to set (none, or all of them when one cannot be written as it is).

    The engine adds a LABEL step for each label it is given, each a container made, committed and removed
    (measured: 20 labels as 20 steps took 1.1 s and 1.1 CPU-s of the engine, as one step 0.1 s and 0.1 CPU-s).
    Only for Berth's own templates: a repository's Dockerfile could end in a line that continues onto ours."""
    words = [word for label in labels.items() for word in label]
    if not labels or not all(LABEL_WORD.fullmatch(word) for word in words):
        return dockerfile, labels
    pairs = " ".join(f'"{key}"="{value}"' for key, value in labels.items())
    return f"{dockerfile.rstrip()}\nLABEL {pairs}\n", {}


def build_context(
    *, source_dir: Path, buildpack: Buildpack, dockerfile: str, ca_bundle: Path | None
) -> IO[bytes]:
    """The build context as an uncompressed tar in a temporary file, positioned at its start.

    File times are kept: the engine's cache keys a COPY on contents and modes only (measured: a touched
    requirements.txt in a fresh checkout still reuses the pip layer), so a new export of the same commit is cached.
    """
    source_dir = Path(source_dir)
    context = tempfile.TemporaryFile()
    patterns = _dockerignore(source_dir) + list(ALWAYS_EXCLUDED) + list(buildpack.exclude)
    wrapped = buildpack.context == "wrapped"
    prefix = "app/" if wrapped else ""
    with tarfile.open(fileobj=context, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
        if wrapped:
            tar.add(source_dir, arcname="app", recursive=False, filter=_normalise)
        # The walk never enters a linked folder, and tar.add keeps a link as a link: the engine gets the link and
        # resolves it inside the context, never on this machine, so no target's bytes leave the tree.
        for relative in sorted(context_files(source_dir, patterns)):
            if not wrapped and relative == "Dockerfile":
                continue  # the rendered one is already in
            tree.check_packable(source_dir, relative)
            tar.add(source_dir / relative, arcname=prefix + relative, recursive=False, filter=_normalise)
        if wrapped:
            ca = ca_bundle.read_bytes() if ca_bundle else b""
            _add_bytes(tar, CONTEXT_CA_PATH, ca)
            # a chain's templates COPY each buildpack's own helpers (berth-node, then berth-static-output)
            for files_dir in (b.files_dir for b in buildpack.chain if b.files_dir.is_dir()):
                for path in sorted(files_dir.rglob("*")):
                    arcname = "berth/files/" + path.relative_to(files_dir).as_posix()
                    tar.add(path, arcname=arcname, recursive=False, filter=_normalise)
    context.seek(0)
    return context


def _dockerignore(source_dir: Path) -> list[str]:
    text = tree.read_text(source_dir, ".dockerignore", max_bytes=MAX_DOCKERIGNORE_BYTES, errors="replace")
    if text is None:
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner names of the machine that pushed mean nothing in the image.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def ensure_stacks(variants: tuple[str, ...], *, on_line: Callable[[str], None]) -> None:
    """Build the stack variants a build needs when missing (first use of node/go/static/trixie: 30-90 s).

    stack_build's lock keeps two builds (of any installation on this engine) from making the same variant at once.
    """
    for variant in variants:
        if variant == "base" and settings.BERTH_STACK_IMAGE:
            continue
        if stack_is_current(variant):
            continue
        stack_build(
            variant,
            echo=lambda line: on_line(f"       {line.strip()}"),
            on_start=lambda variant=variant: on_line(
                f"-----> Preparing the {variant} stack (first use; this takes a minute)"
            ),
        )


def docker_build(
    *,
    source_dir: Path,
    tag: str,
    buildpack: Buildpack,
    on_line: Callable[[str], None],
    ca_bundle: Path | None,
    timeout: float,
    cancelled: Callable[[], bool] = lambda: False,
    labels: dict[str, str] | None = None,
    check_dockerfile: Callable[[str], None] | None = None,
    config: dict[str, str] | None = None,
    on_detail: Callable[[str], None] | None = None,
    cache_ref: str | None = None,
    run_ref: str | None = None,
) -> BuildResult:
    """Build `source_dir` into image `tag` with `buildpack`, calling `on_line` with each output line as it comes.

    Raises BuildError (its message, "error: …", is also the last line given to on_line) when a step fails or
    `timeout` seconds pass, and BuildCancelled when `cancelled()` turns true; either way the engine stops the build.
    `on_line` and `cancelled` are called from the calling thread only. `check_dockerfile` reads the rendered
    Dockerfile before anything is built and raises BuildError to refuse it (the images a team may use). `config`
    is the app's config vars, read by the buildpack's plan (e.g. DISABLE_COLLECTSTATIC), never put in the image.
    With `on_detail`, the engine's step noise goes there instead of `on_line` (BuildOutputFilter). `cache_ref` is
    the app's dependency cache tag: the build starts from it when it exists, and a successful build moves it to its
    own dependency stage (buildpacks whose template marks one with LABEL org.berth.cache-stage). `run_ref` is the
    app's run cache tag, the same for the app's image up to its dependencies (LABEL org.berth.run-stage).
    """
    started = time.monotonic()
    deadline = started + timeout
    on_line(f"-----> {buildpack.display_name} app detected")
    try:
        plan = plan_for(buildpack, source_dir, config)
        for step in plan.steps:
            on_line(step)
        ensure_stacks(tuple(dict.fromkeys((plan.stack, plan.run_stack))), on_line=on_line)
        stack_image = stack_image_ref(plan.stack)
        run_image = stack_image_ref(plan.run_stack)
        start = cache_start(
            cache_ref,
            plan,
            cache_key(buildpack=buildpack, plan=plan, stack_image=stack_image, ca_bundle=ca_bundle),
        )
        run = run_start(run_ref, plan, start)
        dockerfile = render_dockerfile(
            buildpack,
            source_dir,
            stack_image=stack_image,
            run_image=run_image,
            plan=plan,
            cache_image=start.cache_image,
            cache_ref=cache_ref or "",
            deps_base=start.deps_base,
            cache_key=start.key,
            cache_base_size=start.base_size,
            run_ref=run_ref or "",
            run_base=run.base,
            run_base_size=run.base_size,
        )
        if check_dockerfile is not None:
            check_dockerfile(dockerfile)
        image_labels = {**installation_labels(), BUILDPACK_LABEL: buildpack.name, **(labels or {})}
        if buildpack.context == "wrapped":
            dockerfile, image_labels = labels_in_dockerfile(dockerfile, image_labels)
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise BuildError(f"the build CA bundle {ca_bundle} does not exist")
        context = build_context(
            source_dir=source_dir, buildpack=buildpack, dockerfile=dockerfile, ca_bundle=ca_bundle
        )
    except (BuildError, StackBuildError) as exc:
        line = str(exc) if str(exc).startswith("error:") else f"error: {exc}"
        on_line(line)
        raise BuildError(line) from exc
    size = context.seek(0, io.SEEK_END) / 1e6
    context.seek(0)
    if buildpack.context == "repository":
        on_line(f"-----> Building image {tag} with the repository's Dockerfile (context {size:.1f} MB)")
    else:
        on_line(f"-----> Building image {tag} FROM {stack_image} (context {size:.1f} MB)")
    limits = build_container_limits()
    output = BuildOutputFilter(on_line, on_detail, steps_are_noise=buildpack.context == "wrapped")
    with context:
        try:
            image_id = _run_build(
                context=context,
                tag=tag,
                labels=image_labels,
                on_line=output,
                on_failure=on_line,
                failed_step=lambda: output.last_step,
                deadline=deadline,
                timeout=timeout,
                cancelled=cancelled,
                container_limits=limits,
            )
        except BuildError as exc:
            if not re.search(rf"(non-zero code: |exit code ){OOM_EXIT_CODE}\b", str(exc)):
                raise
            # SIGKILL: almost always the kernel's OOM killer at the build's memory limit; say so, not just "137"
            line = (
                f"error: the step was killed: it most likely needed more than the build's memory limit of "
                f"{settings.BERTH_BUILD_MEMORY_MB} MB (BERTH_BUILD_MEMORY_MB)"
            )
            on_line(line)
            raise BuildError(line) from exc
    for ref, label, keep in (
        (cache_ref, CACHE_STAGE_LABEL, start.keep_tag),
        (run_ref, RUN_STAGE_LABEL, run.keep_tag),
    ):
        if ref and output.stage_images.get(label) and not keep:
            image_tag(output.stage_images[label], ref)
    duration = time.monotonic() - started
    on_line(f"-----> Built {tag} ({image_id[:19]}) in {duration:.1f}s")
    return BuildResult(image_id=image_id, tag=tag, duration=duration, buildpack=buildpack)


@dataclass(frozen=True)
class CacheStart:
    """Where a build's dependency stage starts, from the app's cache (`berth/<app>:build-cache`, the dependency
    stage of its last build), and what the new stage's labels say."""

    deps_base: str | None = None  # the app's last dependency stage, installed on; None: a fresh stage (cold)
    cache_image: str | None = None  # the image whose /berth-cache a fresh stage copies; None: none
    key: str = ""  # CACHE_KEY_LABEL of the new stage
    base_size: int = 0  # CACHE_BASE_SIZE_LABEL of the new stage
    keep_tag: bool = False  # the cache already holds these dependencies: its tag stays where it is
    # a cold stage whose install the engine takes as it is from the cache's own cold build (same dependency files)
    same_install: bool = False


def cache_key(
    *, buildpack: Buildpack, plan: BuildPlan, stack_image: str, ca_bundle: Path | None = None
) -> str:
    """A hash of everything a dependency stage is built on but the dependency files' contents: the stack image
    (its id: a rebuilt stack is another), the buildpack's template and files (which pin the tools' versions), the
    plan's values (package manager, Node.js range), which dependency files there are, and the build's CA bundle
    (another rebuilds the template's first stages, which may then fetch a newer Node.js of the same range than the
    one a cache's modules were built with)."""
    stack = image_inspect(stack_image)
    files = [
        (path.relative_to(b.files_dir).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest())
        for b in buildpack.chain
        if b.files_dir.is_dir()
        for path in sorted(b.files_dir.rglob("*"))
        if path.is_file()
    ]
    values = {k: v for k, v in plan.values.items() if k not in ("deps_digest", "disable_collectstatic")}
    parts = {
        "stack": stack["Id"] if stack else stack_image,
        "buildpack": buildpack.name,
        "template": hashlib.sha256(template_text(buildpack).encode()).hexdigest(),
        "files": files,
        "values": values,
        "deps_files": list(plan.deps_files),
        "ca": hashlib.sha256(Path(ca_bundle).read_bytes()).hexdigest()
        if ca_bundle is not None and Path(ca_bundle).is_file()
        else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_start(cache_ref: str | None, plan: BuildPlan, key: str) -> CacheStart:
    """Where the dependency stage starts. With a package manager that makes the environment exactly the
    lockfile's (`plan.deps_reuse`), on the app's last dependency stage, so the install adds only what changed
    and its layer holds only that (copying the caches into a fresh stage, then installing everything from them
    again, cost more than downloading: measured 22 s against 9 s for a uv app). It starts cold (a fresh stage, no
    cache) when that stage was built on anything else (CACHE_KEY_LABEL), is not this tag's own stage, has
    MAX_CACHE_LAYERS layers or grew by more than BERTH_BUILD_CACHE_MB since its chain began cold.
    Other managers (pip, pipenv, Poetry) start from a fresh stage with the cache's download caches copied in.

    Either way, when the dependencies are those the cache's own build installed starting cold, it starts cold
    again: the engine then reuses that build's install layer as it is."""
    image = image_inspect(cache_ref) if cache_ref else None
    if image is None:
        return CacheStart(key=key)
    labels = (image.get("Config") or {}).get("Labels") or {}
    digest = plan.values.get("deps_digest")
    same_deps = bool(digest) and labels.get(CACHE_DEPS_LABEL) == digest
    if same_deps and labels.get(CACHE_FROM_LABEL) == "stack":
        return CacheStart(key=key, same_install=True)
    if not plan.deps_reuse:
        return CacheStart(cache_image=cache_ref, key=key)
    if labels.get(CACHE_STAGE_LABEL) != cache_ref or labels.get(CACHE_KEY_LABEL) != key:
        return CacheStart(key=key)
    base_size = _chain_base_size(image, labels)
    if base_size is None:
        return CacheStart(key=key)
    return CacheStart(deps_base=cache_ref, key=key, base_size=base_size, keep_tag=same_deps)


@dataclass(frozen=True)
class RunStart:
    """Where the app's image starts, from the app's run cache (`berth/<app>:build-run`: its last image up to its
    dependencies), and what the new stage's labels say."""

    # the app's last run stage, its dependencies in place; None: the template's `runtime`
    base: str | None = None
    base_size: int = 0  # CACHE_BASE_SIZE_LABEL of the new stage
    keep_tag: bool = False  # the run cache already holds these dependencies: its tag stays where it is


def run_start(run_ref: str | None, plan: BuildPlan, deps: CacheStart) -> RunStart:
    """Where the app's image starts: on its run cache when the package manager keeps unchanged files in place
    (`plan.run_reuse`), the dependency stage starts on the app's cache or takes its cold install as it is (a new
    cold one installs every file anew, and the image takes all of them anyway), and the run cache was built on the
    same (CACHE_KEY_LABEL), is this tag's own stage and is within MAX_RUN_LAYERS and MAX_RUN_GROWTH. The tag stays where it is when it holds the
    dependencies of these dependency files already (a code-only push): its chain grows only when they change."""
    reused = deps.deps_base is not None or deps.same_install
    image = image_inspect(run_ref) if run_ref and plan.run_reuse and reused else None
    if image is None:
        return RunStart()
    labels = (image.get("Config") or {}).get("Labels") or {}
    if labels.get(RUN_STAGE_LABEL) != run_ref or labels.get(CACHE_KEY_LABEL) != deps.key:
        return RunStart()
    base_size = _chain_base_size(image, labels, max_layers=MAX_RUN_LAYERS, max_growth=MAX_RUN_GROWTH)
    if base_size is None:
        return RunStart()
    digest = plan.values.get("deps_digest")
    return RunStart(
        base=run_ref,
        base_size=base_size,
        keep_tag=bool(digest) and labels.get(CACHE_DEPS_LABEL) == digest,
    )


def _chain_base_size(
    image: dict,
    labels: dict[str, str],
    *,
    max_layers: int | None = None,
    max_growth: float | None = None,
) -> int | None:
    """The size the chain of stages `image` ends began from, or None when the chain is past its bounds
    (`max_layers` layers, by default MAX_CACHE_LAYERS; BERTH_BUILD_CACHE_MB of growth, and `max_growth` times its
    first size when given) or its label is not a number."""
    size = int(image.get("Size") or 0)
    try:
        base_size = int(labels.get(CACHE_BASE_SIZE_LABEL) or 0) or size
    except ValueError:
        return None
    layers = len((image.get("RootFS") or {}).get("Layers") or [])
    growth = size - base_size
    if (
        layers >= (MAX_CACHE_LAYERS if max_layers is None else max_layers)
        or growth > settings.BERTH_BUILD_CACHE_MB * 1024 * 1024
    ):
        return None
    if max_growth is not None and growth > base_size * max_growth:
        return None
    return base_size


def build_container_limits() -> dict:
    """Limits for the containers a build's steps run in: BERTH_BUILD_MEMORY_MB of memory and no swap on top (memswap
    equal to memory), and the first BERTH_BUILD_CPUS of the engine's CPUs at half an app container's CPU weight."""
    memory = settings.BERTH_BUILD_MEMORY_MB * 1024 * 1024
    limits = {"memory": memory, "memswap": memory, "cpushares": 512}
    if settings.BERTH_BUILD_CPUS < engine_cpus():
        limits["cpusetcpus"] = f"0-{settings.BERTH_BUILD_CPUS - 1}"
    return limits


def layers_created(lines: list[str]) -> list[str]:
    """The short ids of the layers a build made rather than took from the cache, newest first, read from its
    output lines. Removing them (an image still in use refuses) drops a one-off build's cache, e.g. a benchmark's."""
    created, skip = [], False
    for line in lines:
        step = STEP_LINE.match(line)
        if step:
            skip = step.group(3).upper().startswith("FROM ")  # a FROM step's id is the stack's own
        elif line == " ---> Using cache":
            skip = True
        elif line.startswith(" ---> ") and not skip:
            layer = line.removeprefix(" ---> ").strip()
            if re.fullmatch(r"[0-9a-f]{12}", layer):
                created.append(layer)
    return created[::-1]


def _run_build(
    *,
    context: IO[bytes],
    tag: str,
    labels: dict[str, str],
    on_line: Callable[..., None],
    deadline: float,
    timeout: float,
    cancelled: Callable[[], bool],
    container_limits: dict | None = None,
    on_failure: Callable[[str], None] | None = None,
    failed_step: Callable[[], str] = lambda: "",
) -> str:
    """Have the engine build `context`; the built image's full id, or BuildError (BuildCancelled) in words for
    the pusher, each also the last line given to `on_failure` (by default `on_line`). `failed_step` names the
    Berth step a buildpack script was running, for the words of a failed step."""
    on_failure = on_failure or on_line
    try:
        run = image_build(
            context=context,
            tag=tag,
            labels=labels,
            on_line=on_line,
            deadline=deadline,
            cancelled=cancelled,
            container_limits=container_limits,
        )
    except BuildRefused as exc:
        # the engine answers 4xx before any step for a Dockerfile it cannot parse
        raise _failed(f"error: the Dockerfile could not be built: {exc}", on_failure) from exc
    except EngineLost as exc:
        raise _failed(f"error: lost the Docker engine during the build: {exc}", on_failure) from exc
    if run.stopped == "timeout":
        raise _failed(f"error: the build timed out after {timeout:g}s", on_failure)
    if run.stopped == "cancelled":
        raise _failed("error: the build was cancelled", on_failure, BuildCancelled)
    if run.error:
        raise _failed(_failure(run, failed_step()), on_failure)
    if not run.image_id:
        raise _failed("error: the engine ended the build without an image", on_failure)
    return run.image_id


def _failed(message: str, on_line: Callable[[str], None], kind: type[BuildError] = BuildError) -> BuildError:
    on_line(message)
    return kind(message)


def _failure(run: BuildRun, berth_step: str = "") -> str:
    exit_code = _NON_ZERO.search(run.error or "")
    if run.step and berth_step and exit_code and run.step[2].startswith("RUN ") and "berth-" in run.step[2]:
        # a buildpack script's step: its name and the tool's lines above say more than the Dockerfile's step
        return f"error: {berth_step} failed (exit code {exit_code[1]}); its output is above"
    if run.step:
        # The engine's total counts the LABEL steps the labels add, so only the number is shown; its message
        # repeats the whole command, which the step's line above already shows in full.
        number, _total, instruction = run.step
        exit_code = _NON_ZERO.search(run.error or "")
        if exit_code:
            short = instruction if len(instruction) <= 100 else instruction[:99] + "…"
            return f"error: the Dockerfile's step {number} failed: {short} returned a non-zero code: {exit_code[1]}"
        return f"error: the Dockerfile's step {number} failed: {run.error}"
    return f"error: the Dockerfile could not be built: {run.error}"
