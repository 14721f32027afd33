"""Each app's dependency cache on the real engine: a build starts from the app's last dependency stage, so adding
one dependency downloads only it; the cache is the app's own tag, and clearing it makes the next build cold."""

import secrets
import shutil
from pathlib import Path

import docker.errors
import pytest
from berth.builds.builder import docker_build
from berth.builds.buildpacks import get_buildpack
from berth.runtime.build import image_untag
from berth.runtime.client import docker_client

from tests.conftest import FIXTURE_APPS

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
ONE_MORE = Path(__file__).parent / "data" / "uv-one-more"  # py-uv-fastapi's project with httpx added (uv add)
LABELS = {"org.berth.test": "1", "org.berth.test.suite": "buildpacks"}


@pytest.fixture
def cache_ref():
    ref = f"berth/t-bp-{secrets.token_hex(3)}:build-cache"
    yield ref
    image_untag(ref)


def _build(source: Path, *, cache_ref: str, tag: str) -> tuple[list[str], list[str]]:
    shown, detail = [], []
    docker_build(
        source_dir=source,
        tag=tag,
        buildpack=get_buildpack("python"),
        on_line=shown.append,
        on_detail=detail.append,
        ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
        timeout=600,
        labels=LABELS,
        cache_ref=cache_ref,
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
        assert any(line.startswith("Step ") and f"FROM {cache_ref} AS cache" in line for line in detail)
        assert _prepared(shown) == 3  # httpx, httpcore, h11; fastapi and the rest come from the cache
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
