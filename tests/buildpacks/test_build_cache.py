"""Each app's dependency cache on the real engine: a build starts from the app's last dependency stage, so adding
one dependency downloads only it; the cache is the app's own tag, and clearing it makes the next build cold. A
dependency removed from the lockfile is gone from the next image; a cache built on another stack, or past its
bounds (layers, size), is not installed on: the dependency stage starts cold."""

import collections
import io
import secrets
import shutil
from pathlib import Path

import docker.errors
import pytest
from berth.builds import builder
from berth.builds.builder import docker_build
from berth.builds.buildpacks import get_buildpack
from berth.builds.images import APP_LABEL
from berth.builds.stack import VARIANTS
from berth.runtime.build import image_untag
from berth.runtime.client import docker_client

from tests.conftest import FIXTURE_APPS
from tests.e2e.conftest import remove_leftover_images

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
ONE_MORE = Path(__file__).parent / "data" / "uv-one-more"  # py-uv-fastapi's project with httpx added (uv add)
PNPM_ONE_MORE = Path(__file__).parent / "data" / "pnpm-one-more"  # node-pnpm with kleur added
LABELS = {"org.berth.test": "1", "org.berth.test.suite": "buildpacks"}
BP_PREFIX = "t-bp-"  # the apps these tests name (tests/e2e/conftest.py sweeps an earlier run's)


@pytest.fixture
def cache_ref():
    ref = f"berth/{BP_PREFIX}{secrets.token_hex(3)}:build-cache"
    yield ref
    _remove_stages(ref)


def _remove_stages(cache_ref: str) -> None:
    """The test's images gone: the tags, the stages their chains left untagged (a cache installed on its last stage
    keeps that one as its parent; untagging the last leaves them all) and the app images a rebuild took the tag
    from (labelled with the app by _build): ~25 images a run were left behind."""
    image_untag(cache_ref)
    image_untag(_run_ref(cache_ref))
    remove_leftover_images(BP_PREFIX, names={_app_of(cache_ref)})


def _app_of(cache_ref: str) -> str:
    return cache_ref.rpartition(":")[0].rpartition("/")[2]  # berth/<app>:build-cache


def _remove_with_descendants(image_id: str) -> None:
    """The image and every image built on it: the build's other stages stay on the engine as its unnamed
    children, and the engine keeps a parent (untagging it only) while it has any."""
    api = docker_client().api
    children = collections.defaultdict(list)
    for image in api.images(all=True):
        children[image.get("ParentId")].append(image["Id"])
    order: list[str] = []

    def visit(parent: str) -> None:
        for child in children[parent]:
            visit(child)
        order.append(parent)  # after its children

    visit(image_id)
    for image in order:
        try:
            api.remove_image(image, force=True)
        except docker.errors.APIError:
            pass  # gone meanwhile


def _run_ref(cache_ref: str) -> str:
    """The run cache tag beside a dependency cache tag (as builds.models.build_run_ref beside build_cache_ref)."""
    return cache_ref.replace(":build-cache", ":build-run")


def _build(
    source: Path, *, cache_ref: str, tag: str, buildpack: str = "python"
) -> tuple[list[str], list[str]]:
    shown, detail = [], []
    docker_build(
        source_dir=source,
        tag=tag,
        buildpack=get_buildpack(buildpack),
        on_line=shown.append,
        on_detail=detail.append,
        ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
        timeout=600,
        labels={**LABELS, APP_LABEL: _app_of(cache_ref)},  # the test's images, whatever tag moved off them
        cache_ref=cache_ref,
        run_ref=_run_ref(cache_ref),
    )
    return shown, detail


def _prepared(lines: list[str]) -> int:
    # uv: "Prepared N packages in …": the packages it had to download and unpack (none of the cached ones)
    counts = [int(line.split()[1]) for line in lines if line.strip().startswith("Prepared ")]
    assert len(counts) == 1, lines
    return counts[0]


def test_adding_one_dependency_downloads_only_it_and_clearing_the_cache_downloads_all_again(
    tmp_path, cache_ref
):
    source = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "py-uv-fastapi", source)
    tag = cache_ref.replace(":build-cache", ":build-test")
    try:
        _build(source, cache_ref=cache_ref, tag=tag)
        cache = docker_client().images.get(cache_ref)
        du = docker_client().containers.run(
            cache_ref, ["du", "-sm", "/berth-cache/uv"], entrypoint=[], remove=True, labels=LABELS
        )
        assert int(du.split()[0]) > 1
        # the app's image does not carry the cache
        assert b"/berth-cache" not in docker_client().containers.run(
            tag, ["ls", "/"], entrypoint=[], remove=True, labels=LABELS
        )

        # a code-only push after the first one reuses the install layer as it is
        (source / "main.py").write_text((source / "main.py").read_text() + "\n# a code change\n")
        _, detail = _build(source, cache_ref=cache_ref, tag=tag)
        install = next(
            i for i, line in enumerate(detail) if line.startswith("Step ") and "berth-python install" in line
        )
        assert detail[install + 1] == " ---> Using cache"
        assert docker_client().images.get(cache_ref).id == cache.id

        for name in ("pyproject.toml", "uv.lock"):
            shutil.copy(ONE_MORE / name, source / name)
        shown, detail = _build(source, cache_ref=cache_ref, tag=tag)
        assert _deps_from(detail) == cache_ref  # installed on the last build's environment
        assert _prepared(shown) == 3  # httpx, httpcore, h11; fastapi and the rest come from the cache
        # the tool's lines are the user's story: no warning about how Berth runs it (uv 0.13 deprecated UV_NATIVE_TLS)
        assert not [line for line in shown if "warning:" in line], shown
        assert docker_client().images.get(cache_ref).id != cache.id  # the cache moved on with the build

        assert image_untag(cache_ref) is True
        assert image_untag(cache_ref) is False
        (source / "uv.lock").write_text(
            (source / "uv.lock").read_text() + "\n"
        )  # a changed lock: install again
        shown, _ = _build(source, cache_ref=cache_ref, tag=tag)
        assert _prepared(shown) > 10
    finally:
        try:
            docker_client().images.remove(tag)
        except docker.errors.APIError:
            pass


def _deps_from(detail: list[str]) -> str:
    """What the build's dependency stage started FROM: the app's cache tag, or `fresh` (cold)."""
    froms = [
        line.split(" : FROM ", 1)[1] for line in detail if line.startswith("Step ") and " : FROM " in line
    ]
    (deps,) = [line.removesuffix(" AS deps") for line in froms if line.endswith(" AS deps")]
    return deps


def _run_from(detail: list[str]) -> str:
    """What the app's image started FROM: the app's run cache tag, or `runtime` (its dependencies copied whole)."""
    (run,) = [
        line.split(" : FROM ", 1)[1].removesuffix(" AS run") for line in detail if line.endswith(" AS run")
    ]
    return run


def _changed_layer_size(tag: str) -> int:
    """The size of the layer that copied what changed in node_modules into the app's image."""
    history = docker_client().images.get(tag).history()
    # newest first; the engine records a COPY as `#(nop) COPY dir:<hash> in <destination>`
    return next(
        step["Size"] for step in history if step["CreatedBy"].rstrip().endswith(" in /app/node_modules/")
    )


def _run(tag: str, *command: str) -> str:
    return (
        docker_client().containers.run(tag, list(command), entrypoint=[], remove=True, labels=LABELS).decode()
    )


def _use(source: Path, data: Path, names: tuple[str, ...] = ("pyproject.toml", "uv.lock")) -> None:
    for name in names:
        shutil.copy(data / name, source / name)


@pytest.fixture
def uv_app(tmp_path, cache_ref):
    source = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "py-uv-fastapi", source)
    tag = cache_ref.replace(":build-cache", ":build-test")
    yield source, tag
    try:
        docker_client().images.remove(tag)
    except docker.errors.APIError:
        pass


HAS_HTTPX = "import importlib.util; print(importlib.util.find_spec('httpx') is not None)"


def test_a_dependency_removed_from_the_lockfile_is_gone_from_the_next_image(uv_app, cache_ref):
    source, tag = uv_app
    _use(source, ONE_MORE)
    _build(source, cache_ref=cache_ref, tag=tag)
    assert _run(tag, "/app/.venv/bin/python", "-c", HAS_HTTPX).strip() == "True"

    _use(source, FIXTURE_APPS / "py-uv-fastapi")  # httpx (and httpcore, h11) removed with uv remove
    _, detail = _build(source, cache_ref=cache_ref, tag=tag)
    assert _deps_from(detail) == cache_ref
    assert _run(tag, "/app/.venv/bin/python", "-c", HAS_HTTPX).strip() == "False"
    assert "httpx" not in _run(cache_ref, "ls", "/app/.venv/lib/python3.11/site-packages")


def test_a_cache_built_on_another_stack_image_is_not_installed_on(uv_app, cache_ref, settings):
    source, tag = uv_app
    _build(source, cache_ref=cache_ref, tag=tag)
    # the same stack rebuilt (another image id), as after an upgrade of Berth or of the stack's packages
    client = docker_client()
    stack = f"berth/t-bp-stack-{secrets.token_hex(3)}:bookworm"
    client.images.build(
        fileobj=io.BytesIO(f"FROM {VARIANTS['base'].tag}\nLABEL org.berth.test.rebuilt={stack}\n".encode()),
        tag=stack,
        labels=LABELS,
        rm=True,
    )
    settings.BERTH_STACK_IMAGE = stack
    try:
        _use(source, ONE_MORE)
        shown, detail = _build(source, cache_ref=cache_ref, tag=tag)
        assert _deps_from(detail) == "fresh"
        assert _prepared(shown) > 10  # no environment or cache of the other stack
        assert _run(tag, "/app/.venv/bin/python", "-c", HAS_HTTPX).strip() == "True"
    finally:
        try:
            client.images.remove(tag)
        except docker.errors.APIError:
            pass
        _remove_stages(cache_ref)
        _remove_with_descendants(client.images.get(stack).id)


@pytest.mark.parametrize("bound", ["layers", "size"])
def test_a_cache_past_its_bound_is_not_installed_on(uv_app, cache_ref, settings, monkeypatch, bound):
    source, tag = uv_app
    _build(source, cache_ref=cache_ref, tag=tag)
    cold_layers = len(docker_client().images.get(cache_ref).attrs["RootFS"]["Layers"])
    if bound == "layers":
        monkeypatch.setattr(builder, "MAX_CACHE_LAYERS", cold_layers + 1)
    else:
        settings.BERTH_BUILD_CACHE_MB = 0  # the chain may not grow at all past its cold stage

    _use(source, ONE_MORE)
    _, detail = _build(source, cache_ref=cache_ref, tag=tag)
    assert _deps_from(detail) == cache_ref  # the cold stage itself is within the bound
    assert len(docker_client().images.get(cache_ref).attrs["RootFS"]["Layers"]) > cold_layers

    _use(source, FIXTURE_APPS / "py-uv-fastapi")
    _, detail = _build(source, cache_ref=cache_ref, tag=tag)
    assert _deps_from(detail) == "fresh"
    cache = docker_client().images.get(cache_ref)
    assert len(cache.attrs["RootFS"]["Layers"]) == cold_layers
    # the chain the tag moved from went with it: no stage of this cache is left behind untagged
    stages = docker_client().images.list(filters={"label": f"{builder.CACHE_STAGE_LABEL}={cache_ref}"})
    assert [image.id for image in stages] == [cache.id]


def test_node_installs_on_its_last_environment_and_drops_a_removed_dependency(
    tmp_path, cache_ref, monkeypatch
):
    source = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "node-pnpm", source)
    tag = cache_ref.replace(":build-cache", ":build-test")
    files = ("package.json", "pnpm-lock.yaml")
    try:
        _, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _run_from(detail) == "runtime"
        assert _changed_layer_size(tag) > 1_000_000  # every dependency, on no run cache
        _use(source, PNPM_ONE_MORE, files)
        shown, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _deps_from(detail) == cache_ref
        assert any("Packages: +1" in line for line in shown), shown  # kleur only: the rest was installed
        assert "kleur" in _run(tag, "ls", "/app/node_modules")
        # the app's image started from its last one's node_modules and copied only what changed (kleur's few
        # files and pnpm's own lists), not every dependency again
        assert _run_from(detail) == _run_ref(cache_ref)
        assert _changed_layer_size(tag) < 200_000
        assert "listening" in _run(
            tag, "node", "-e", "require('kleur'); require('express'); console.log('listening')"
        )
        run_cache = docker_client().images.get(_run_ref(cache_ref)).id
        (source / "server.js").write_text((source / "server.js").read_text() + "\n// a code-only change\n")
        _, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _run_from(detail) == _run_ref(cache_ref)
        # its chain grows only with the dependencies
        assert docker_client().images.get(_run_ref(cache_ref)).id == run_cache
        # the app's files are its own (a framework may write beside them), node_modules root's as a virtualenv is:
        # copied as it is, no owner changed file by file; nothing set aside for the copy is left in the image
        owners = _run(tag, "stat", "-c", "%U %n", "/app", "/app/package.json", "/app/node_modules").split(
            "\n"
        )
        assert owners[:3] == ["app /app", "app /app/package.json", "root /app/node_modules"]
        assert _run(tag, "sh", "-c", "touch /app/written && ls /").split().count("berth-app") == 0

        _use(source, FIXTURE_APPS / "node-pnpm", files)
        _, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _deps_from(detail) == cache_ref
        assert _run_from(detail) == _run_ref(cache_ref)  # kleur's removal applied on the run cache
        assert "kleur" not in _run(tag, "ls", "/app/node_modules")
        assert "kleur" not in _run(cache_ref, "ls", "/app/node_modules")
        # a run cache grown past its bound (it is the app's image, pulled by every node) is not started from
        monkeypatch.setattr(builder, "MAX_RUN_GROWTH", 0.0)
        (source / "server.js").write_text(
            (source / "server.js").read_text() + "\n// another code-only change\n"
        )
        _, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _run_from(detail) == "runtime"
    finally:
        try:
            docker_client().images.remove(tag)
        except docker.errors.APIError:
            pass


def test_yarn_1_installing_on_its_last_environment_drops_a_removed_dependency(tmp_path, cache_ref):
    source = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "node-yarn1", source)
    tag = cache_ref.replace(":build-cache", ":build-test")
    try:
        _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert "left-pad" in _run(cache_ref, "ls", "/app/node_modules")  # the stage before the prune

        # left-pad removed as `yarn remove left-pad` does: from package.json and from yarn.lock (and from the
        # build script, which used it)
        (source / "build.js").write_text('require("fs").writeFileSync("built.txt", "built");\n')
        package = (source / "package.json").read_text()
        (source / "package.json").write_text(
            package.replace(',\n  "devDependencies": { "left-pad": "1.3.0" }', "")
        )
        lock = (source / "yarn.lock").read_text()
        (source / "yarn.lock").write_text(
            lock[: lock.index("left-pad@1.3.0:")] + lock[lock.index("ms@2.1.3:") :]
        )
        _, detail = _build(source, cache_ref=cache_ref, tag=tag, buildpack="node")
        assert _deps_from(detail) == cache_ref
        assert "left-pad" not in _run(cache_ref, "ls", "/app/node_modules")
        assert "ms" in _run(tag, "ls", "/app/node_modules").split()
    finally:
        try:
            docker_client().images.remove(tag)
        except docker.errors.APIError:
            pass
