"""The pushed tree is hostile: a symbolic link in a push must never make the worker (root) read a file outside the
repository, and nothing a push holds may write outside the folder it is unpacked into.

End to end, a second team pushes repositories whose Procfile, Dockerfile, dependency files or .dockerignore are
links to the platform's own `$BERTH_HOME/encryption_key` (absolute, through `../` chains, through a directory link):
each push is refused with one `remote: error:` line naming the path, the key's bytes appear nowhere (push output,
build log), and nothing is released. Unit tests of the safe reader and the safe unpacking run on a tmp tree.
"""

import os
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest
from berth.builds import tree
from berth.builds.builder import build_context
from berth.builds.buildpacks import Buildpack, detect
from berth.builds.procfile import read_procfile

from tests.e2e.test_push_to_live import git

NO_PROMPT = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
APP_PY = "import os, http.server\nhttp.server.HTTPServer(('', int(os.environ['PORT'])), None)\n"
BUILDPACKS_DIR = Path(__file__).resolve().parents[2] / "buildpacks"


# -- end to end: pushes to the real platform -------------------------------------------------------------------


def _platform_secret(platform) -> bytes:
    """The platform's config encryption key, as the worker keeps it in its BERTH_HOME (made on first use)."""
    from berth.apps.crypto import fernet

    fernet()  # the test process shares the platform's BERTH_HOME: this makes the key file when it is missing
    key = (platform.home / "encryption_key").read_bytes().strip()
    assert len(key) >= 32
    return key


def _commit(repo: Path, files: dict[str, str], links: dict[str, str]) -> None:
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    for name, target in links.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hostile tree")


def _push(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "push", "berth", "main"], cwd=repo, env=NO_PROMPT, capture_output=True, text=True, timeout=600
    )


def _assert_secret_absent(secret: bytes, text: str, what: str) -> None:
    # any case: the engine upper-cases an unknown Dockerfile instruction when it quotes it
    assert secret.decode().lower() not in text.lower(), what


def _assert_refused_naming(pushed: subprocess.CompletedProcess, *, path: str, secret: bytes, tenant) -> None:
    from berth.builds.models import Build
    from berth.releases.models import Release

    output = pushed.stdout + pushed.stderr
    errors = [line for line in pushed.stderr.splitlines() if line.startswith("remote: error:")]
    print("what the attacker saw:", errors)
    assert pushed.returncode != 0, output[-3000:]
    _assert_secret_absent(secret, output, "the platform's key reached the pusher")
    naming = [line for line in errors if path in line]
    assert len(naming) == 1, errors
    build = Build.objects.filter(app=tenant.app).latest("pk")
    assert build.status == "failed", (build.status, build.status_reason)
    _assert_secret_absent(secret, build.log + build.status_reason, "the platform's key is in the build log")
    assert not Release.objects.filter(app=tenant.app).exists(), "a release was made"


PYTHON_APP = {"app.py": APP_PY, "requirements.txt": ""}


def _cases(home: Path) -> dict[str, tuple[dict[str, str], dict[str, str], str]]:
    """id → (files, links, the path the refusal must name). Links are made relative to the pushed tree, which the
    hook unpacks into $BERTH_HOME/builds/push-<id>/: `../..` from its root is $BERTH_HOME itself."""
    key = str(home / "encryption_key")
    return {
        "procfile-absolute": (PYTHON_APP, {"Procfile": key}, "Procfile"),
        "procfile-dotdot-chain": (
            {**PYTHON_APP, "config/settings.py": "DEBUG = False\n"},
            {"Procfile": "config/../../../encryption_key"},
            "Procfile",
        ),
        "procfile-through-directory-link": (
            PYTHON_APP,
            {"conf": str(home), "Procfile": "conf/encryption_key"},
            "Procfile",
        ),
        "procfile-link-chain": (
            PYTHON_APP,
            {"Procfile": "web.procfile", "web.procfile": "shared/encryption_key", "shared": "../.."},
            "Procfile",
        ),
        "dockerfile-absolute": ({}, {"Dockerfile": key}, "Dockerfile"),
        "requirements-absolute": ({"app.py": APP_PY}, {"requirements.txt": key}, "requirements.txt"),
        "pyproject-dotdot": (
            {"app.py": APP_PY},
            {"pyproject.toml": "../../encryption_key"},
            "pyproject.toml",
        ),
        "package-json-absolute": ({"server.js": "require('http')\n"}, {"package.json": key}, "package.json"),
        "dockerignore-absolute": (
            {"Dockerfile": 'FROM berth/stack:bookworm\nCMD ["sleep", "1"]\n'},
            {".dockerignore": key},
            ".dockerignore",
        ),
    }


CASE_IDS = [
    "procfile-absolute",
    "procfile-dotdot-chain",
    "procfile-through-directory-link",
    "procfile-link-chain",
    "dockerfile-absolute",
    "requirements-absolute",
    "pyproject-dotdot",
    "package-json-absolute",
    "dockerignore-absolute",
]


@pytest.mark.docker
@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", CASE_IDS)
def test_a_push_whose_file_links_out_of_the_tree_is_refused_naming_the_path_and_never_shows_the_target(
    case, berth_platform, tenant, repo
):
    secret = _platform_secret(berth_platform)
    files, links, path = _cases(berth_platform.home)[case]
    _commit(repo, files, links)
    pushed = _push(repo)
    _assert_refused_naming(pushed, path=path, secret=secret, tenant=tenant)
    for target in links.values():
        if target.startswith("/"):
            assert target not in pushed.stderr, "the refusal names the link's target"


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_a_dockerfile_copy_of_a_link_out_of_the_tree_never_puts_the_target_in_the_image(
    berth_platform, tenant, repo
):
    """The build context carries the link itself, not its target's bytes: the engine resolves it inside the
    context, where the key is not."""
    from berth.builds.models import Build
    from berth.releases.models import Release

    secret = _platform_secret(berth_platform)
    dockerfile = "FROM berth/stack:bookworm\nCOPY secret.txt /secret.txt\nRUN cat /secret.txt\n"
    _commit(repo, {"Dockerfile": dockerfile}, {"secret.txt": str(berth_platform.home / "encryption_key")})
    pushed = _push(repo)
    output = pushed.stdout + pushed.stderr
    print("what the attacker saw:", [line for line in pushed.stderr.splitlines() if "error" in line])
    _assert_secret_absent(secret, output, "the platform's key reached the pusher")
    build = Build.objects.filter(app=tenant.app).latest("pk")
    _assert_secret_absent(secret, build.log, "the platform's key is in the build log")
    assert pushed.returncode != 0, output[-3000:]
    assert build.status == "failed"
    assert not Release.objects.filter(app=tenant.app).exists()


def _crafted_commit(repo: Path, outside: Path) -> str:
    """A commit whose root tree holds BOTH a symlink `a -> <outside>` and a tree `a/` with a file `b`: git's own
    porcelain never makes this, `git mktree` does. Unpacked naively, `a/b` lands in `<outside>/b`."""

    def run(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, input=stdin, capture_output=True, text=True, check=True
        ).stdout.strip()

    blob = run("hash-object", "-w", "--stdin", stdin="written by a crafted tree\n")
    link = run("hash-object", "-w", "--stdin", stdin=str(outside))
    app = run("hash-object", "-w", "--stdin", stdin=APP_PY)
    inner = run("mktree", stdin=f"100644 blob {blob}\tb\n")
    root = run(
        "mktree",
        stdin=f"120000 blob {link}\ta\n040000 tree {inner}\ta\n100644 blob {app}\tapp.py\n",
    )
    return run("commit-tree", root, "-m", "crafted")


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_a_crafted_tree_pushing_a_file_through_its_own_symlink_writes_nothing_outside(
    berth_platform, tenant, repo, tmp_path
):
    from berth.builds.models import Build
    from berth.releases.models import Release

    outside = tmp_path / "outside"
    outside.mkdir()
    commit = _crafted_commit(repo, outside)
    git(repo, "update-ref", "refs/heads/main", commit)
    pushed = _push(repo)
    print("what the attacker saw:", [line for line in pushed.stderr.splitlines() if "error" in line])
    assert pushed.returncode != 0, pushed.stderr[-3000:]
    assert list(outside.iterdir()) == []
    assert not Release.objects.filter(app=tenant.app).exists()
    assert not Build.objects.filter(app=tenant.app, status="succeeded").exists()


# -- unit: the safe reader on a tmp tree -------------------------------------------------------------------------


@pytest.fixture
def pushed(tmp_path) -> Path:
    """A pushed tree beside a secret outside it."""
    (tmp_path / "secret").write_text("the platform's key\n")
    root = tmp_path / "home" / "builds" / "push-1"
    (root / "config").mkdir(parents=True)
    (root / "config" / "settings.py").write_text("DEBUG = False\n")
    (root / "Procfile").write_text("web: python app.py\n")
    return root


def test_the_safe_reader_reads_a_regular_file_and_says_none_for_a_missing_one(pushed):
    assert tree.read_bytes(pushed, "Procfile") == b"web: python app.py\n"
    assert tree.read_text(pushed, "config/settings.py") == "DEBUG = False\n"
    assert tree.read_bytes(pushed, "nosuch") is None
    assert tree.read_bytes(pushed, "config/nosuch/x") is None
    assert tree.read_bytes(pushed, "config") is None  # a directory is not a file to read
    assert tree.is_file(pushed, "Procfile") and not tree.is_file(pushed, "config")


def test_the_safe_reader_follows_a_link_that_stays_inside_the_tree(pushed):
    os.symlink("config/settings.py", pushed / "settings.py")
    os.symlink("config", pushed / "conf")
    os.symlink("../Procfile", pushed / "config" / "Procfile")
    assert tree.read_text(pushed, "settings.py") == "DEBUG = False\n"
    assert tree.read_text(pushed, "conf/Procfile") == "web: python app.py\n"
    os.symlink("nosuch", pushed / "dangling")
    assert tree.read_bytes(pushed, "dangling") is None


@pytest.mark.parametrize(
    ("name", "target"),
    [
        pytest.param("Dockerfile", "ABSOLUTE", id="absolute"),
        pytest.param("Dockerfile", "../../../secret", id="dotdot"),
        pytest.param("Dockerfile", "config/../../../../secret", id="dotdot-through-a-folder"),
        pytest.param("Dockerfile", "/nonexistent/secret", id="absolute-dangling"),
    ],
)
def test_the_safe_reader_refuses_a_link_out_of_the_tree_naming_the_path_only(pushed, name, target):
    secret = pushed.parents[2] / "secret"
    os.symlink(str(secret) if target == "ABSOLUTE" else target, pushed / name)
    with pytest.raises(tree.UnsafePath) as refused:
        tree.read_bytes(pushed, name)
    assert refused.value.path == name
    assert name in str(refused.value)
    assert "secret" not in str(refused.value) and str(pushed) not in str(refused.value)
    with pytest.raises(tree.UnsafePath):
        tree.is_file(pushed, name)


def test_the_safe_reader_refuses_a_path_through_a_directory_link_out_of_the_tree(pushed):
    os.symlink(str(pushed.parents[2]), pushed / "conf")
    with pytest.raises(tree.UnsafePath) as refused:
        tree.read_bytes(pushed, "conf/secret")
    assert refused.value.path == "conf/secret"


def test_the_safe_reader_refuses_a_chain_of_links_that_ends_outside(pushed):
    os.symlink("b", pushed / "a")
    os.symlink("c/secret", pushed / "b")
    os.symlink("../../..", pushed / "c")
    with pytest.raises(tree.UnsafePath):
        tree.read_bytes(pushed, "a")


def test_the_safe_reader_refuses_a_fifo_without_blocking(pushed):
    os.mkfifo(pushed / "Procfile.fifo")
    with pytest.raises(tree.UnsafePath) as refused:
        tree.read_bytes(pushed, "Procfile.fifo")
    assert "regular file" in str(refused.value)


def test_the_safe_reader_refuses_a_socket_and_a_device(pushed, tmp_path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(pushed / "sock"))
        with pytest.raises(tree.UnsafePath):
            tree.read_bytes(pushed, "sock")
    os.symlink("/dev/zero", pushed / "zero")
    with pytest.raises(tree.UnsafePath):
        tree.read_bytes(pushed, "zero")


def test_the_safe_reader_refuses_a_path_that_names_its_way_out(pushed):
    for name in ("../secret", "/etc/passwd", "config/../../secret"):
        with pytest.raises(tree.UnsafePath):
            tree.read_bytes(pushed, name)


def test_the_safe_reader_refuses_a_file_larger_than_asked(pushed):
    (pushed / "big").write_bytes(b"x" * 2048)
    with pytest.raises(tree.TooLarge) as refused:
        tree.read_bytes(pushed, "big", max_bytes=1024)
    assert "larger than" in str(refused.value)


def test_the_procfile_reader_refuses_a_linked_procfile_without_its_content(pushed):
    (pushed / "Procfile").unlink()
    os.symlink("../../../secret", pushed / "Procfile")
    with pytest.raises(tree.UnsafePath) as refused:
        read_procfile(pushed, default_web_command="python app.py")
    assert "platform's key" not in str(refused.value)


def test_detection_refuses_a_detect_file_linked_out_of_the_tree(pushed):
    os.symlink("../../../secret", pushed / "requirements.txt")
    with pytest.raises(tree.UnsafePath) as refused:
        detect(pushed, directory=BUILDPACKS_DIR)
    assert refused.value.path == "requirements.txt"


def _buildpack(context: str) -> Buildpack:
    return Buildpack(
        name="t",
        display_name="T",
        priority=1,
        detect_any_file=("x",),
        stack="base",
        run_stack="base",
        default_web_command="",
        directory=BUILDPACKS_DIR / "dockerfile",
        context=context,
    )


@pytest.mark.parametrize("context", ["wrapped", "repository"])
def test_the_build_context_carries_a_link_out_of_the_tree_as_a_link_never_its_target(pushed, context):
    secret = pushed.parents[2] / "secret"
    os.symlink(str(secret), pushed / "secret.txt")
    os.symlink(str(pushed.parents[2]), pushed / "home")
    packed = build_context(
        source_dir=pushed, buildpack=_buildpack(context), dockerfile="FROM scratch\n", ca_bundle=None
    )
    data = packed.read()
    assert b"the platform's key" not in data
    packed.seek(0)
    with tarfile.open(fileobj=packed) as tar:
        members = {member.name: member for member in tar.getmembers()}
    prefix = "app/" if context == "wrapped" else ""
    assert members[prefix + "secret.txt"].issym() and members[prefix + "secret.txt"].size == 0
    assert members[prefix + "home"].issym()
    assert not any(name.startswith(prefix + "home/") for name in members)


def test_the_build_context_refuses_a_linked_dockerignore(pushed):
    os.symlink("../../../secret", pushed / ".dockerignore")
    with pytest.raises(tree.UnsafePath):
        build_context(
            source_dir=pushed, buildpack=_buildpack("repository"), dockerfile="FROM scratch\n", ca_bundle=None
        )


def test_the_build_context_refuses_a_special_file(pushed):
    os.mkfifo(pushed / "fifo")
    with pytest.raises(tree.UnsafePath) as refused:
        build_context(
            source_dir=pushed, buildpack=_buildpack("wrapped"), dockerfile="FROM scratch\n", ca_bundle=None
        )
    assert refused.value.path == "fifo"


# -- unit: unpacking a commit ------------------------------------------------------------------------------------


@pytest.fixture
def local_repo(tmp_path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.test")
    git(path, "config", "user.name", "dev")
    return path


def test_unpacking_a_commit_keeps_files_modes_and_links(local_repo, tmp_path):
    (local_repo / "bin").mkdir()
    (local_repo / "bin" / "run").write_text("#!/bin/sh\n")
    (local_repo / "bin" / "run").chmod(0o755)
    (local_repo / "app.py").write_text(APP_PY)
    os.symlink("bin/run", local_repo / "run")
    # a link out of the tree is kept, as a link: Berth never reads it, the engine resolves it inside the image
    os.symlink("/usr/share/nginx/html", local_repo / "public")
    git(local_repo, "add", "-A")
    git(local_repo, "commit", "-q", "-m", "app")
    into = tmp_path / "into"
    into.mkdir()
    tree.tree_export(repo=local_repo / ".git", sha="HEAD", into=into)
    assert (into / "app.py").read_text() == APP_PY
    assert os.access(into / "bin" / "run", os.X_OK)
    assert os.readlink(into / "run") == "bin/run"
    assert os.readlink(into / "public") == "/usr/share/nginx/html"


def test_unpacking_a_crafted_tree_never_writes_through_its_own_symlink(local_repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    commit = _crafted_commit(local_repo, outside)
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(tree.UnsafePath) as refused:
        tree.tree_export(repo=local_repo / ".git", sha=commit, into=into)
    assert refused.value.path == "a"  # the folder `a`, which would be made through the link `a`
    assert "symbolic link" in str(refused.value) and str(outside) not in str(refused.value)
    assert list(outside.iterdir()) == []


def test_unpacking_an_unknown_commit_is_a_build_error(local_repo, tmp_path):
    from berth.builds.errors import BuildError

    with pytest.raises(BuildError):
        tree.tree_export(repo=local_repo / ".git", sha="0" * 40, into=tmp_path)
