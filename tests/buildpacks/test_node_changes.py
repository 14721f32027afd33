"""The node buildpack's run cache, its list of changes (`berth-node changes`, the shell the build stage runs) checked
outside a build: an image that applies them as the template does (remove what is gone, copy what changed over it)
ends with exactly the build's node_modules — contents, types, modes, links — through content changes at the same
path, type changes, new files in existing folders, deletions and names it cannot list; and only what changed is set
aside. The engine's side (the same steps in a real build) is tests/buildpacks/test_build_cache.py."""

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO_DIR

BERTH_NODE = REPO_DIR / "buildpacks" / "node" / "files" / "berth-node"


class Build:
    """A build stage's folders (the app with its node_modules, the run folder, the changes) and an image's app."""

    def __init__(self, root: Path):
        self.app = root / "build" / "app"
        self.modules = self.app / "node_modules"
        self.run_dir = root / "build" / "berth-run"
        self.changed = root / "build" / "berth-run-changed"
        self.before = root / "build" / "before-manifest"
        self.image_app = root / "image" / "app"
        self.modules.mkdir(parents=True)
        (self.image_app / "node_modules").mkdir(parents=True)
        self.before.write_text("")  # the template's `runtime` stage: an empty manifest

    def changes(self) -> None:
        """Run `berth-node changes`, then do what the app's image does with them, and keep the new manifest as
        the run cache's for the next round."""
        env = os.environ | {
            "BERTH_APP_DIR": str(self.app),
            "BERTH_RUN_DIR": str(self.run_dir),
            "BERTH_RUN_CHANGED": str(self.changed),
            "BERTH_RUN_BEFORE": str(self.before),
        }
        subprocess.run(["sh", str(BERTH_NODE), "changes"], env=env, check=True, timeout=60)
        # RUN cd /app && xargs -0 -r rm -rf -- < /berth-run/gone && mkdir -p node_modules
        for gone in filter(None, (self.run_dir / "gone").read_bytes().split(b"\0")):
            path = self.image_app / os.fsdecode(gone)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        (self.image_app / "node_modules").mkdir(exist_ok=True)
        # COPY --from=deps /berth-run-changed/ /app/node_modules/ (the engine follows a link at the source's root,
        # replaces what is not a folder on both sides, and gives folders the source's mode)
        _copy_over(self.changed.resolve(), self.image_app / "node_modules")
        shutil.copy(self.run_dir / "manifest", self.before)

    def set_aside(self) -> set[str]:
        """The files `changes` set aside (not through a link to the whole of node_modules)."""
        assert not self.changed.is_symlink()
        return {str(p.relative_to(self.changed)) for p in self.changed.rglob("*") if not p.is_dir()}


def _copy_over(source: Path, destination: Path) -> None:
    for entry in sorted(source.iterdir()):
        target = destination / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if (target.exists() or target.is_symlink()) and (target.is_symlink() or not target.is_dir()):
                target.unlink()
            target.mkdir(exist_ok=True)
            _copy_over(entry, target)
            os.chmod(target, entry.lstat().st_mode & 0o7777)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        else:
            shutil.copy2(entry, target)


def _listing(modules: Path) -> dict[str, tuple]:
    listing = {}
    for path in sorted(modules.rglob("*")):
        mode = path.lstat().st_mode & 0o7777
        if path.is_symlink():
            listing[str(path.relative_to(modules))] = ("link", os.readlink(path))
        elif path.is_dir():
            listing[str(path.relative_to(modules))] = ("dir", oct(mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            listing[str(path.relative_to(modules))] = ("file", oct(mode), digest)
    return listing


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _same_tree(build: Build) -> None:
    assert _listing(build.image_app / "node_modules") == _listing(build.modules)


def test_the_image_applying_the_changes_ends_with_exactly_the_builds_node_modules(tmp_path):
    build = Build(tmp_path)
    m = build.modules
    _write(m / "express" / "index.js", "module.exports = 1;\n")
    _write(m / "express" / "lib" / "router.js", "router v1\n")
    _write(m / "express" / "package.json", '{"version": "4.21.1"}\n')
    os.utime(m / "express" / "package.json", (499162500, 499162500))  # npm's mtime for every file: 1985-10-26
    _write(m / "big" / "data.bin", "x" * 100_000)
    _write(m / ".bin" / "tool", "#!/bin/sh\n", mode=0o755)
    _write(m / "private" / "secret.js", "one\n")
    os.chmod(m / "private", 0o700)
    _write(m / "will-be-a-folder", "a file first\n")
    _write(m / "will-be-a-link" / "index.js", "a folder first\n")
    os.symlink("express", m / "alias")
    _write(m / "name with spaces & 'quotes'" / "index.js", "odd but allowed\n")

    build.changes()  # no run cache: all of it
    assert build.changed.is_symlink()
    _same_tree(build)

    time.sleep(0.02)  # a later change time
    # a version bump: same path, same size, other contents (npm would give it the same 1985 mtime)
    _write(m / "express" / "package.json", '{"version": "4.21.2"}\n')
    os.utime(m / "express" / "package.json", (499162500, 499162500))
    _write(m / "private" / "new.js", "two\n")  # a new file in a 0700 folder
    os.remove(m / "will-be-a-folder")
    _write(m / "will-be-a-folder" / "index.js", "now a folder\n")
    shutil.rmtree(m / "will-be-a-link")
    os.symlink("express", m / "will-be-a-link")
    os.remove(m / "alias")
    os.symlink("big", m / "alias")  # retargeted
    shutil.rmtree(m / "express" / "lib")  # gone
    os.chmod(m / ".bin" / "tool", 0o700)

    build.changes()
    _same_tree(build)
    set_aside = build.set_aside()
    assert "big/data.bin" not in set_aside and "express/index.js" not in set_aside  # unchanged: not copied
    assert {"express/package.json", "private/new.js", "will-be-a-folder/index.js", ".bin/tool"} <= set_aside
    assert oct((build.image_app / "node_modules" / "private").stat().st_mode & 0o777) == "0o700"

    build.changes()  # nothing changed: nothing set aside, nothing gone
    assert build.set_aside() == set()
    assert (build.run_dir / "gone").read_bytes() == b""
    _same_tree(build)


def test_a_name_it_cannot_list_replaces_node_modules_whole_now_and_next_time(tmp_path):
    build = Build(tmp_path)
    _write(build.modules / "pkg" / "index.js", "1\n")
    build.changes()
    _write(build.modules / "pkg" / "tab\there.js", "2\n")
    build.changes()
    assert build.changed.is_symlink()
    assert (build.run_dir / "gone").read_bytes() == b"node_modules\0"
    assert (build.run_dir / "manifest").read_text() == ""  # so the next build replaces it whole too
    _same_tree(build)
    os.remove(build.modules / "pkg" / "tab\there.js")
    build.changes()
    assert build.changed.is_symlink()
    _same_tree(build)
