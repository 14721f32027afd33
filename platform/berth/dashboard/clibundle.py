"""The `berth` command as one file for a teammate's laptop: a zipapp of berth.cli with the pure-Python packages it
uses, taken from this server's own environment (so it is made air-gapped too), served at /cli/berth.

It needs Python 3.11 or newer, as the vendored packages do (websockets); on an older Python, `pipx install` the
CLI's own distribution (deploy/cli/pyproject.toml: Python 3.9+, pip picks versions of httpx and websockets that fit).
Made once per set of inputs (a hash of every file in it), into BERTH_HOME/cli/.
"""

import hashlib
import importlib.util
import io
import os
import stat
import zipfile
from pathlib import Path

from django.conf import settings

# what berth.cli imports, and what those import (httpx: anyio, certifi, httpcore, h11, idna; anyio before Python
# 3.15: typing_extensions); compiled speed-ups (websockets') are left out, the packages fall back to Python
VENDORED = (
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "idna",
    "certifi",
    "websockets",
    "typing_extensions",
    "sniffio",
)
MINIMUM_PYTHON = (3, 11)
MAIN = f"""import sys

if sys.version_info < {MINIMUM_PYTHON!r}:
    sys.exit(
        "error: this berth needs Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} or newer (this is "
        + sys.version.split()[0]
        + "); on an older Python: pipx install <Berth's source>/deploy/cli"
    )
from berth.cli.main import main

sys.exit(main())
"""


def _package_files(name: str) -> list[tuple[Path, str]]:
    """(file, name in the archive) of an importable package or module; nothing when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return []
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        top = root.parent
        files = [path for path in sorted(root.rglob("*")) if path.is_file()]
    else:
        files, top = [Path(spec.origin)], Path(spec.origin).parent
    keep = []
    for path in files:
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".so", ".c", ".pyd"):
            continue
        keep.append((path, path.relative_to(top).as_posix()))
    return keep


def _cli_files() -> list[tuple[Path, str]]:
    cli = Path(next(iter(importlib.util.find_spec("berth.cli").submodule_search_locations)))
    berth = cli.parent
    files = [(berth / "__init__.py", "berth/__init__.py")]
    files += [(path, f"berth/cli/{path.name}") for path in sorted(cli.glob("*.py"))]
    return files


def cli_bundle_path() -> Path:
    return Path(settings.BERTH_HOME) / "cli" / "berth"


def cli_bundle(*, force: bool = False) -> Path:
    """The zipapp, made if missing or if any file it holds changed. Written next to its place, then renamed."""
    files = _cli_files() + [entry for name in VENDORED for entry in _package_files(name)]
    digest = hashlib.sha256(MAIN.encode())
    for path, arcname in files:
        digest.update(arcname.encode() + b"\0" + path.read_bytes())
    stamp = digest.hexdigest()[:16]
    target = cli_bundle_path()
    stamp_file = target.with_suffix(".stamp")
    if not force and target.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("__main__.py", MAIN)
        for path, arcname in files:
            bundle.write(path, arcname)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(b"#!/usr/bin/env python3\n" + archive.getvalue())
    partial.chmod(
        partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    )
    partial.replace(target)
    stamp_file.write_text(stamp)
    return target
