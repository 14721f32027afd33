"""The CLI's own distribution (deploy/cli/pyproject.toml) installs alone, as `pipx install ./deploy/cli` does: into a
fresh virtual environment, with only httpx and websockets beside it (no Django), and runs."""

import shutil
import subprocess
import sys
import zipfile

from tests.conftest import REPO_DIR


def test_the_cli_distribution_installs_alone_and_runs(tmp_path):
    # a copy of the two folders it is made from: pip builds in place, and the clone must stay as it is
    source = tmp_path / "berth"
    (source / "deploy/cli").mkdir(parents=True)
    shutil.copy(REPO_DIR / "deploy/cli/pyproject.toml", source / "deploy/cli")
    shutil.copytree(
        REPO_DIR / "platform/berth/cli",
        source / "platform/berth/cli",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(REPO_DIR / "platform/berth/__init__.py", source / "platform/berth")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin/pip"), "install", "--disable-pip-version-check", "-q", str(source / "deploy/cli")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    packages = subprocess.run(
        [str(venv / "bin/pip"), "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "berth-cli==" in packages and "httpx==" in packages and "websockets==" in packages
    assert "django" not in packages and "celery" not in packages
    version = subprocess.run(
        [str(venv / "bin/berth"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("berth 0."), version
    listed = subprocess.run([str(venv / "bin/berth"), "help"], capture_output=True, text=True, timeout=60)
    assert "apps:create" in listed.stdout and "pipelines:promote" in listed.stdout
    # it holds the CLI and nothing of the server
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            str(venv / "bin/pip"),
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(source / "deploy/cli"),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = wheel_dir.glob("berth_cli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "berth/cli/main.py" in names
    assert not [name for name in names if name.startswith(("berth/api", "berth/config", "berth/apps"))]
