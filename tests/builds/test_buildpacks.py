"""The buildpack registry: loading, ordering, detection, overrides, rendering and the build context (no Docker)."""

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from berth.builds.builder import build_context, layers_created
from berth.builds.buildpacks import (
    NOTHING_DETECTED,
    detect,
    get_buildpack,
    load_buildpacks,
    render_dockerfile,
    web_command_cmd,
)
from berth.builds.errors import BuildError

from tests.conftest import FIXTURE_APPS

APPS = FIXTURE_APPS
KNOWN = ["dockerfile", "python", "node", "go", "static"]


def test_all_five_buildpacks_load_in_priority_order_dockerfile_first():
    buildpacks = load_buildpacks()
    assert [b.name for b in buildpacks] == KNOWN
    assert [b.priority for b in buildpacks] == sorted(b.priority for b in buildpacks)
    assert get_buildpack("go").stacks == ("go", "base")
    assert get_buildpack("static").stacks == ("static",)


@pytest.mark.parametrize("name", ["dockerfile", "python", "node", "go", "static"])
def test_each_sample_app_is_detected_as_its_buildpack(name):
    assert detect(APPS / name).name == name


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["pyproject.toml"], "python"),
        (["requirements.txt", "package.json"], "python"),
        (["requirements.txt", "Dockerfile"], "dockerfile"),
        (["package.json", "index.html"], "node"),
        (["public/index.html"], "static"),
    ],
)
def test_detection_follows_priority(tmp_path, files, expected):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert detect(tmp_path).name == expected


def test_an_override_names_the_buildpack_whatever_is_detected():
    assert detect(APPS / "node", override="static").name == "static"


def test_an_unknown_override_lists_the_known_buildpacks():
    with pytest.raises(BuildError, match="unknown buildpack 'cobol'; known buildpacks: " + ", ".join(KNOWN)):
        detect(APPS / "python", override="cobol")


def test_nothing_detected_says_what_to_add(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(BuildError) as caught:
        detect(tmp_path)
    assert str(caught.value) == NOTHING_DETECTED
    assert NOTHING_DETECTED == (
        "no buildpack detected: add a requirements.txt, package.json, go.mod, index.html or Dockerfile"
    )


def test_a_broken_buildpack_toml_is_named(tmp_path):
    shutil.copytree(Path(get_buildpack("python").directory), tmp_path / "python")
    toml = tmp_path / "python" / "buildpack.toml"
    toml.write_text(toml.read_text().replace("priority = 20", 'priority = "high"'))
    with pytest.raises(BuildError, match=r"python/buildpack.toml: `priority` must be an integer"):
        load_buildpacks(tmp_path)


@pytest.mark.parametrize("name", ["python", "node", "go", "static"])
def test_templates_render_from_the_stack_with_port_5000_and_the_default_command(name):
    buildpack = get_buildpack(name)
    dockerfile = render_dockerfile(buildpack, APPS / name, stack_image="stack:build", run_image="stack:run")
    assert "{{" not in dockerfile
    assert dockerfile.count("FROM stack:build") >= 1
    assert ("FROM stack:run" in dockerfile) == (name == "go")
    assert "ENV PORT=5000" in dockerfile
    assert "WORKDIR /app" in dockerfile
    assert "USER app" in dockerfile
    cmd = dockerfile.rstrip().splitlines()[-1]
    assert cmd.startswith("CMD ")
    assert json.loads(cmd[4:]) == ["/bin/sh", "-c", f"exec {buildpack.default_web_command}"]


def test_the_dockerfile_buildpack_renders_the_repositorys_dockerfile_as_is():
    rendered = render_dockerfile(get_buildpack("dockerfile"), APPS / "dockerfile", stack_image="unused")
    assert rendered.strip() == (APPS / "dockerfile" / "Dockerfile").read_text().strip()


def test_python_installs_dependencies_before_copying_the_code():
    dockerfile = render_dockerfile(get_buildpack("python"), APPS / "python", stack_image="s")
    assert dockerfile.index("berth-python install") < dockerfile.index("COPY --chown=app:app app/ /app/")
    # the install script (berth/files/berth-python) points pip, uv, poetry and pipenv at the copied CA bundle
    script = (get_buildpack("python").files_dir / "berth-python").read_text()
    assert (
        "PIP_CERT=/tmp/berth-ca.crt SSL_CERT_FILE=/tmp/berth-ca.crt REQUESTS_CA_BUNDLE=/tmp/berth-ca.crt"
        in script
    )
    # the CA bundle is copied in the dependency stage only
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "berth-ca" not in final_stage


def test_simple_commands_are_execd_and_shell_lines_are_left_alone():
    assert json.loads(web_command_cmd("gunicorn app:app")) == ["/bin/sh", "-c", "exec gunicorn app:app"]
    assert json.loads(web_command_cmd("./migrate && ./serve")) == ["/bin/sh", "-c", "./migrate && ./serve"]
    assert json.loads(web_command_cmd("DEBUG=1 ./serve")) == ["/bin/sh", "-c", "DEBUG=1 ./serve"]


def _names(context) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=context) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_the_wrapped_context_holds_the_app_the_ca_and_the_buildpack_files_but_not_git(tmp_path):
    source = tmp_path / "src"
    (source / ".git").mkdir(parents=True)
    (source / ".git" / "HEAD").write_text("ref")
    (source / "secrets").mkdir()
    (source / "secrets" / "key").write_text("k")
    (source / ".dockerignore").write_text("# ignore\nsecrets\n")
    (source / "index.html").write_text("hi")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    buildpack = get_buildpack("static")
    names = _names(build_context(source_dir=source, buildpack=buildpack, dockerfile="FROM x\n", ca_bundle=ca))
    assert {"Dockerfile", "berth/ca.crt", "berth/files/berth-static", "app", "app/index.html"} <= set(names)
    assert not [n for n in names if ".git" in n or "secrets" in n]
    assert names["berth/files/berth-static"].mode & 0o111
    assert names["app/index.html"].uid == 0


def test_without_a_ca_bundle_the_context_holds_an_empty_one(tmp_path):
    (tmp_path / "requirements.txt").write_text("")
    context = build_context(
        source_dir=tmp_path, buildpack=get_buildpack("python"), dockerfile="", ca_bundle=None
    )
    assert _names(context)["berth/ca.crt"].size == 0


def test_the_repository_context_is_the_tree_itself_with_the_rendered_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM original\n")
    (tmp_path / "server.py").write_text("")
    context = build_context(
        source_dir=tmp_path,
        buildpack=get_buildpack("dockerfile"),
        dockerfile="FROM rendered\n",
        ca_bundle=None,
    )
    with tarfile.open(fileobj=context) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "server.py"]
        assert tar.extractfile("Dockerfile").read() == b"FROM rendered\n"


def test_layers_created_skips_cached_steps_and_from_images():
    lines = [
        "Step 1/4 : FROM berth/stack:bookworm",
        " ---> f46713ea791b",
        "Step 2/4 : COPY a /a",
        " ---> Using cache",
        " ---> 111111111111",
        "Step 3/4 : RUN make",
        " ---> Running in 222222222222",
        "Removing intermediate container 222222222222",
        " ---> 333333333333",
        "Step 4/4 : CMD x",
        " ---> Running in 444444444444",
        " ---> 555555555555",
        "Successfully built 555555555555",
    ]
    assert layers_created(lines) == ["555555555555", "333333333333"]
