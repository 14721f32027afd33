"""The add-on images: PostgreSQL and Redis servers made locally from Debian packages, like the stack image.

No registry is assumed (air-gapped installs), so each image is `mmdebstrap` of bookworm with the server's package,
then `docker import`. The root filesystem goes to a file first, because the packaged version (read inside it by
`dpkg-query`) becomes a label of the image and `docker import` takes its labels when it starts. Each image is
labelled with a hash of its recipe and rebuilt only when the recipe changes. The server is started by the command
berth.runtime.addons gives the service; the image holds nothing but Debian's packages.
"""

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from berth.runtime.addons import LABEL_ADDON_VERSION, RECIPE_LABEL, addon_image_ref
from berth.runtime.build import ImageImport, ImageImportError
from berth.runtime.pull import image_inspect

SUITE = "bookworm"
BASE_PACKAGES = ("ca-certificates", "tini")
IMAGE_ENV = {
    "PATH": "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class AddonImage:
    """One add-on kind's image: the Debian packages it is made of and the one whose version it carries."""

    kind: str
    packages: tuple[str, ...]
    version_package: str
    # files of those packages left out (dpkg path-exclude): what the server never uses
    excluded: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return addon_image_ref(self.kind)

    @property
    def recipe_hash(self) -> str:
        recipe = {"suite": SUITE, "packages": sorted(BASE_PACKAGES + self.packages), "env": IMAGE_ENV}
        if self.excluded:
            recipe["excluded"] = sorted(self.excluded)
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


IMAGES = {
    # Without the JIT (PostgreSQL's default jit=on finds no provider and plans as without it; an add-on's queries
    # are an app's short ones, which the JIT's costs exclude anyway): LLVM, the Z3 it links and the bitcode for
    # inlining are 159 of the image's 409 MB, sent to every node an add-on is placed or recovered on.
    "postgres": AddonImage(
        "postgres",
        ("postgresql-15",),
        "postgresql-15",
        excluded=(
            "/usr/lib/postgresql/*/lib/llvmjit*",
            "/usr/lib/postgresql/*/lib/bitcode/*",
            "/usr/lib/*/libLLVM-*",
            "/usr/lib/*/libz3.so*",
        ),
    ),
    "redis": AddonImage("redis", ("redis-server",), "redis-server"),
}


class AddonImageBuildError(RuntimeError):
    pass


def addon_image_is_current(kind: str) -> bool:
    image = image_inspect(IMAGES[kind].tag)
    if image is None:
        return False
    return ((image.get("Config") or {}).get("Labels") or {}).get(RECIPE_LABEL) == IMAGES[kind].recipe_hash


def addon_image_build(kind: str, *, force: bool = False, echo: Callable[[str], None] = print) -> bool:
    """Build the add-on image of `kind` if it is missing or its recipe changed. Returns True if it built."""
    if kind not in IMAGES:
        raise AddonImageBuildError(f"unknown add-on kind {kind!r}; known: {', '.join(IMAGES)}")
    image = IMAGES[kind]
    if not force and addon_image_is_current(kind):
        echo(f"{image.tag} is up to date (recipe {image.recipe_hash})")
        return False
    started = time.monotonic()
    echo(f"building {image.tag} from Debian {SUITE} packages: {', '.join(BASE_PACKAGES + image.packages)}")
    with tempfile.TemporaryDirectory(prefix="berth-addon-image-") as workdir:
        rootfs, version_file = Path(workdir) / "rootfs.tar", Path(workdir) / "version"
        version_query = (
            f"chroot \"$1\" dpkg-query -W -f='${{Version}}' {image.version_package} > {version_file}"
        )
        try:
            done = subprocess.run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    "--mode=root",
                    "--format=tar",
                    f"--include={','.join(BASE_PACKAGES + image.packages)}",
                    "--aptopt=Acquire::Retries=3",
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                    "--dpkgopt=path-exclude=/usr/share/locale/*",
                    *(f"--dpkgopt=path-exclude={pattern}" for pattern in image.excluded),
                    f"--customize-hook={version_query}",
                    '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
                    SUITE,
                    str(rootfs),
                ],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise AddonImageBuildError(
                f"mmdebstrap took over {BUILD_TIMEOUT_S} s building {image.tag}"
            ) from exc
        for line in done.stderr.splitlines():
            if line.startswith(("I:", "E:", "W:")):
                echo(f"  {line}")
        if done.returncode != 0:
            raise AddonImageBuildError(f"mmdebstrap failed (exit {done.returncode}) building {image.tag}")
        version = version_file.read_text().strip()
        changes = [
            f"LABEL {RECIPE_LABEL}={image.recipe_hash}",
            f"LABEL {LABEL_ADDON_VERSION}={version}",
            'ENTRYPOINT ["/usr/bin/tini", "--"]',
        ]
        changes += [f"ENV {k}={v}" for k, v in IMAGE_ENV.items()]
        with rootfs.open("rb") as source:
            importer = ImageImport(source=source, tag=image.tag, changes=changes)
            try:
                importer.finish()
            except ImageImportError as exc:
                raise AddonImageBuildError(f"docker import failed for {image.tag}: {exc}") from exc
    size = (image_inspect(image.tag) or {}).get("Size", 0)
    echo(
        f"built {image.tag} ({image.version_package} {version}) in {time.monotonic() - started:.0f}s, {size / 1e6:.0f} MB"
    )
    return True
