"""Files at rest: another local user of the machine reads nothing of Berth's state. $BERTH_HOME is 0700; the
generated secrets (secret key, encryption key, registry password) and the SQLite database are 0600; the git
repositories' folder is 0700. Set so at creation, and tightened at start-up when an older install left them looser.

Each start-up is a real one: manage.py in a fresh interpreter (settings are read at start-up)."""

import stat
from pathlib import Path

import pytest

from tests.conftest import manage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def start(home: Path, *args: str) -> None:
    env = {
        "BERTH_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'berth.sqlite3'}",
        "BERTH_SECRET_KEY": "",  # generated into BERTH_HOME/secret_key, as on a real first run
        "BERTH_ENCRYPTION_KEY": "",
        "BERTH_REGISTRY": "127.0.0.1:5000",  # its password is generated into BERTH_HOME/registry/password
    }
    done = manage(*(args or ("migrate", "--noinput", "-v0")), env=env)
    assert done.returncode == 0, done.stderr[-2000:]


# the encryption key is made on first use, not at start-up
USE_THE_ENCRYPTION_KEY = ("shell", "-c", "from berth.apps.crypto import encrypt_text; encrypt_text('x')")


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "berth-home"


def test_a_fresh_home_is_private_and_so_are_its_secrets_and_database(home):
    start(home)
    start(home, *USE_THE_ENCRYPTION_KEY)
    assert mode(home) == 0o700
    assert mode(home / "secret_key") == 0o600
    assert mode(home / "encryption_key") == 0o600
    assert mode(home / "registry") == 0o700
    assert mode(home / "registry" / "password") == 0o600
    assert mode(home / "berth.sqlite3") == 0o600
    for journal in home.glob("berth.sqlite3-*"):  # WAL and shared-memory files
        assert mode(journal) == 0o600, journal
    assert mode(home / "repos") == 0o700


def test_looser_modes_left_by_an_older_install_are_tightened_at_start_up(home):
    start(home)
    start(home, *USE_THE_ENCRYPTION_KEY)
    # what Berth made before this change: a 0755 home, 0644 files, a 0755 repos folder
    home.chmod(0o755)
    (home / "repos").mkdir(mode=0o755, exist_ok=True)
    (home / "repos").chmod(0o755)
    (home / "registry").chmod(0o755)
    for name in ("secret_key", "encryption_key", "berth.sqlite3", "registry/password"):
        (home / name).chmod(0o644)
    start(home, "check")
    assert mode(home) == 0o700
    assert mode(home / "repos") == 0o700
    assert mode(home / "registry") == 0o700
    for name in ("secret_key", "encryption_key", "berth.sqlite3", "registry/password"):
        assert mode(home / name) == 0o600, name


def test_a_shared_folder_named_as_home_is_not_locked(tmp_path):
    # BERTH_HOME=/tmp by mistake must not make /tmp 0700 for everybody: a sticky, world-writable folder is shared
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    start(shared, "check")
    assert mode(shared) == 0o1777
    assert mode(shared / "secret_key") == 0o600
