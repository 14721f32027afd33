"""`docker import` (berth.runtime.build.ImageImport, which makes the stack and add-on images) goes to the engine
settings.DOCKER_HOST names, like every other call Berth makes to Docker. It once ran the CLI with its own
default: "is the image current?" asked the configured engine and the import went to this machine's, so an
installation whose DOCKER_HOST is another engine rebuilt its images on every start (the cluster tests did, each
run: two add-on images from Debian packages, ~2 minutes). The image the tag named before goes with a new import:
it stayed behind, unnamed (28 old add-on images, ~5 GB, on the machine the suite runs on)."""

import io
import secrets
import tarfile

import docker.errors
import pytest
from berth.runtime.build import ImageImport, ImageImportError
from berth.runtime.client import docker_client

pytestmark = pytest.mark.docker


def _rootfs(path, data: bytes = b"berth\n") -> None:
    """A root filesystem of one file: enough for an image."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("etc/berth-import-test")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _import(rootfs, tag: str) -> None:
    with open(rootfs, "rb") as source:
        importer = ImageImport(source=source, tag=tag, changes=["LABEL org.berth.test=1"])
        importer.finish()


def test_the_import_goes_to_the_engine_the_settings_name(settings, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    _rootfs(rootfs)
    client = docker_client()
    here = f"berth/t-import-{secrets.token_hex(3)}:1"
    elsewhere = f"berth/t-import-{secrets.token_hex(3)}:1"
    made = []
    try:
        _import(rootfs, here)
        first = client.images.get(here)
        made.append(first.id)
        assert first.labels["org.berth.test"] == "1"
        # imported again (a new recipe): the tag moves, and the image it named goes with it
        _rootfs(rootfs, b"berth, rebuilt\n")
        _import(rootfs, here)
        assert client.images.get(here).id != first.id
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(first.id)

        missing = tmp_path / "no-engine.sock"
        settings.DOCKER_HOST = f"unix://{missing}"
        with pytest.raises(ImageImportError, match="no-engine.sock"):
            _import(rootfs, elsewhere)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(elsewhere)  # not imported into this machine's engine instead
    finally:
        for ref in (here, elsewhere, *made):
            try:
                client.images.remove(ref)
            except docker.errors.ImageNotFound:
                pass
