"""The stack image: built from Debian packages, labelled with its recipe, rebuilt only when that changes."""

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
from berth.builds.stack import RECIPE_LABEL, VARIANTS, StackBuildError, stack_build, stack_image_ref
from berth.runtime.client import docker_client

pytestmark = pytest.mark.docker


def test_stack_image_is_current_and_labelled_with_its_recipe():
    lines = []
    built = stack_build("base", echo=lines.append)  # built by `make test` already, so this is the no-op path
    image = docker_client().images.get(VARIANTS["base"].tag)
    assert image.labels[RECIPE_LABEL] == VARIANTS["base"].recipe_hash
    if not built:
        assert "up to date" in lines[-1]


def test_stack_image_runs_python_with_venv_and_pip_and_an_init():
    client = docker_client()
    out = client.containers.run(
        VARIANTS["base"].tag,
        ["sh", "-c", "python3 -m venv /tmp/v && /tmp/v/bin/pip --version && ls /etc/ssl/certs | head -1"],
        remove=True,
    ).decode()
    assert "pip" in out
    image = client.images.get(VARIANTS["base"].tag)
    assert image.attrs["Config"]["Entrypoint"] == ["/usr/bin/tini", "--"]


def test_a_changed_recipe_is_not_current(monkeypatch):
    from berth.builds import stack

    changed = stack.StackVariant("base", ("hello",))
    monkeypatch.setitem(stack.VARIANTS, "base", changed)
    assert changed.recipe_hash != stack.StackVariant("base").recipe_hash
    assert stack.stack_is_current("base") is False


def test_unknown_variant_is_refused():
    with pytest.raises(StackBuildError, match="unknown stack variant"):
        stack_build("cobol")


def test_berth_stack_image_overrides_the_base(settings):
    settings.BERTH_STACK_IMAGE = "registry.example/stack:1"
    assert stack_image_ref() == "registry.example/stack:1"
    assert stack_build("base", echo=lambda line: None) is False
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client().images.get("registry.example/stack:1")


def test_a_variant_another_installation_is_building_is_waited_for_not_built_twice(
    monkeypatch, settings, tmp_path
):
    """The engine's images are every installation's on this machine: one building a variant (here this test, in
    another BERTH_HOME) makes the others wait for it, and they find it current instead of building it again."""
    from berth.builds import stack

    name = f"t-lock-{secrets.token_hex(3)}"
    variant = stack.StackVariant(name)  # base's recipe under a tag of its own: "built" by tagging base
    monkeypatch.setitem(stack.VARIANTS, name, variant)
    built: list[str] = []
    monkeypatch.setattr(stack, "_build", lambda building, echo: built.append(building.tag))
    monkeypatch.setattr(stack, "MACHINE_LOCK_DIR", tmp_path)  # the machine's lock folder (/run/lock)
    client = docker_client()
    lines: list[str] = []
    try:
        settings.BERTH_HOME = str(tmp_path / "one")
        with ThreadPoolExecutor(1) as pool:
            with stack._variant_lock(name):
                settings.BERTH_HOME = str(tmp_path / "other")
                waiter = pool.submit(stack_build, name, echo=lines.append)
                time.sleep(1.5)
                assert not waiter.done(), lines  # waiting for the lock, not building
                tag = variant.tag.split(":", 1)[1]
                client.images.get(VARIANTS["base"].tag).tag(stack.STACK_REPOSITORY, tag)
            assert waiter.result(timeout=30) is False
        assert built == [] and "built meanwhile by another process" in lines[-1], lines
        assert lines[0] == f"waiting for another process building {variant.tag}", lines
    finally:
        try:
            client.images.remove(variant.tag)  # the tag only: base keeps the image
        except docker.errors.ImageNotFound:
            pass
