"""The stack image: the Debian base every buildpack builds FROM, made locally from Debian packages.

No registry is assumed (air-gapped installs), so the image is `mmdebstrap | docker import`. Each variant is
labelled with a hash of its recipe and rebuilt only when the recipe changes. Most variants are Debian bookworm; the
`trixie` variant is Debian trixie's base (its Python is 3.13, bookworm's 3.11), for apps that ask for that Python.
"""

import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from berth.runtime.build import ImageImport, ImageImportError
from berth.runtime.pull import image_inspect

STACK_REPOSITORY = "berth/stack"
SUITE = "bookworm"  # the suite of every variant that does not name its own
RECIPE_LABEL = "org.berth.stack.recipe"
BASE_PACKAGES = ("ca-certificates", "tini", "python3", "python3-venv", "python3-pip")


@dataclass(frozen=True)
class StackVariant:
    """One flavour of the stack: the base packages plus a runtime (Node.js, Go, a web server)."""

    name: str
    extra_packages: tuple[str, ...] = ()
    suite: str = SUITE

    @property
    def tag(self) -> str:
        # a suite's own base variant is tagged with the suite alone: berth/stack:bookworm, berth/stack:trixie
        suffix = "" if self.name in ("base", self.suite) else f"-{self.name}"
        return f"{STACK_REPOSITORY}:{self.suite}{suffix}"

    @property
    def packages(self) -> tuple[str, ...]:
        return BASE_PACKAGES + self.extra_packages

    @property
    def recipe(self) -> dict:
        return {
            "suite": self.suite,
            "variant": "minbase",
            "packages": sorted(self.packages),
            "env": STACK_ENV,
        }

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:16]


STACK_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
}
VARIANTS = {
    "base": StackVariant("base"),
    "node": StackVariant("node", ("nodejs", "npm")),
    "go": StackVariant("go", ("golang-go", "git")),
    "static": StackVariant("static", ("nginx-light",)),
    "trixie": StackVariant("trixie", suite="trixie"),
}


# The images are the Docker engine's, not one installation's: every Berth on this machine (`make up` and `make
# test` beside it, the test suite's workers, each with a BERTH_HOME of its own) builds them under one lock per
# variant, so a variant missing on the engine is built once, the others waiting for it (measured on a new machine:
# 50 CPU-s and ~55 s for the node stack). /run/lock is the machine's; BERTH_HOME where it cannot be written.
MACHINE_LOCK_DIR = Path("/run/lock")


class StackBuildError(RuntimeError):
    pass


@contextmanager
def _variant_lock(variant: str, *, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Held while the variant is built. `on_wait` is called once if another process holds it (then this waits)."""
    directory = MACHINE_LOCK_DIR
    if not os.access(directory, os.W_OK):  # then only this installation's builds wait for each other
        directory = Path(settings.BERTH_HOME) / "locks"
        directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"berth-stack-{variant}.lock", "a") as lock:
        # released when the file closes, or when a killed holder's process ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def stack_image_ref(variant: str = "base") -> str:
    """The image buildpacks build FROM. BERTH_STACK_IMAGE overrides the base variant (registry users)."""
    if variant == "base" and settings.BERTH_STACK_IMAGE:
        return settings.BERTH_STACK_IMAGE
    return VARIANTS[variant].tag


def stack_is_current(variant: str = "base") -> bool:
    stack = VARIANTS[variant]
    image = image_inspect(stack.tag)
    if image is None:
        return False
    return ((image.get("Config") or {}).get("Labels") or {}).get(RECIPE_LABEL) == stack.recipe_hash


def stack_build(
    variant: str = "base",
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    on_start: Callable[[], None] | None = None,
) -> bool:
    """Build the stack variant if it is missing or its recipe changed (`on_start` called first, when it builds).
    Returns True if it built."""
    if variant not in VARIANTS:
        raise StackBuildError(f"unknown stack variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant == "base" and settings.BERTH_STACK_IMAGE:
        echo(f"BERTH_STACK_IMAGE={settings.BERTH_STACK_IMAGE} is used; nothing to build")
        return False
    stack = VARIANTS[variant]
    if not force and stack_is_current(variant):
        echo(f"{stack.tag} is up to date (recipe {stack.recipe_hash})")
        return False
    with _variant_lock(variant, on_wait=lambda: echo(f"waiting for another process building {stack.tag}")):
        # another process may have built it while this one waited: then it is current (unless forced)
        if not force and stack_is_current(variant):
            echo(
                f"{stack.tag} is up to date (recipe {stack.recipe_hash}; built meanwhile by another process)"
            )
            return False
        if on_start is not None:
            on_start()
        _build(stack, echo)
    return True


def _build(stack: StackVariant, echo: Callable[[str], None]) -> None:
    started = time.monotonic()
    echo(f"building {stack.tag} from Debian {stack.suite} packages: {', '.join(stack.packages)}")
    changes = [f"LABEL {RECIPE_LABEL}={stack.recipe_hash}", 'ENTRYPOINT ["/usr/bin/tini", "--"]']
    changes += [f"ENV {k}={v}" for k, v in STACK_ENV.items()]
    debootstrap = subprocess.Popen(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            f"--include={','.join(stack.packages)}",
            "--aptopt=Acquire::Retries=3",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
            stack.suite,
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    importer = ImageImport(source=debootstrap.stdout, tag=stack.tag, changes=changes)
    debootstrap.stdout.close()  # the importer owns the pipe now
    for raw in debootstrap.stderr:
        line = raw.decode(errors="replace").rstrip()
        if line.startswith(("I:", "E:", "W:")):
            echo(f"  {line}")
    if debootstrap.wait() != 0:
        importer.kill()
        raise StackBuildError(f"mmdebstrap failed (exit {debootstrap.returncode}) building {stack.tag}")
    try:
        importer.finish()
    except ImageImportError as exc:
        raise StackBuildError(f"docker import failed for {stack.tag}: {exc}") from exc
    size = (image_inspect(stack.tag) or {}).get("Size", 0)
    echo(f"built {stack.tag} in {time.monotonic() - started:.0f}s, {size / 1e6:.0f} MB")
