"""The image builder against the real Docker engine: each buildpack's sample app builds and answers HTTP on $PORT,
failures name the step, timeouts and cancellation stop the engine's build, code-only changes reuse the
dependency layer."""

import re
import time
import uuid
from pathlib import Path

import docker
import httpx
import pytest
from berth.builds.builder import BUILDPACK_LABEL, docker_build, layers_created
from berth.builds.buildpacks import detect, get_buildpack
from berth.builds.errors import BuildCancelled, BuildError
from berth.builds.stack import stack_build
from berth.runtime.client import docker_client

from tests.conftest import FIXTURE_APPS, NO_TLS, wait_for

pytestmark = pytest.mark.docker

APPS = FIXTURE_APPS
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TAG_PREFIX = "berth-test/builds-"
SUITE_LABEL = "org.berth.test.suite"
LABELS = {"org.berth.test": "1", SUITE_LABEL: "builds"}
EXPECTED = {
    "python": "hello from python on port 5000",
    "node": "hello from node on port 5000, a day is 86400000 ms",
    "go": "hello from go on port 5000",
    "static": "<h1>hello from static</h1>",
    "dockerfile": "hello from a Dockerfile",
}


def _remove_leftovers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": f"{SUITE_LABEL}=builds"}):
        container.remove(force=True)
    for image in client.images.list(filters={"label": f"{SUITE_LABEL}=builds"}):
        for tag in image.tags:
            if tag.startswith(TAG_PREFIX):
                client.images.remove(tag, force=True)
    # a rebuild under the same tag leaves the previous image untagged
    for image in client.images.list(filters={"label": f"{SUITE_LABEL}=builds", "dangling": True}):
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.APIError:
            pass  # gone already, or a container of a running test still uses it


@pytest.fixture(scope="session")
def docker_env():
    """Leftovers of a killed run removed first, everything these tests made removed at the end. The node, go and
    static stacks are built by the first build that needs them (once: they stay), so that cost falls in that test.
    """
    client = docker_client()
    _remove_leftovers(client)
    stack_build("base", echo=lambda line: None)
    yield client
    _remove_leftovers(client)


@pytest.fixture
def one_off_layers(docker_env):
    """Lines of builds whose cache no later build reuses: the layers they made are removed afterwards."""
    builds: list[list[str]] = []
    yield builds
    for lines in builds:
        for layer in layers_created(lines):
            try:
                docker_env.images.remove(layer, noprune=True)
            except docker.errors.APIError:
                pass  # still used by an image or another cached build


def _tag(name: str) -> str:
    return f"{TAG_PREFIX}{name}:{uuid.uuid4().hex[:8]}"


def _build(source: Path, *, tag: str | None = None, **kwargs):
    lines: list[str] = []
    options = {"ca_bundle": CA_BUNDLE, "timeout": 600, "labels": LABELS, **kwargs}
    buildpack = options.pop("buildpack", None) or detect(source)
    try:
        result = docker_build(
            source_dir=source,
            tag=tag or _tag(buildpack.name),
            buildpack=buildpack,
            on_line=lines.append,
            **options,
        )
    except BuildError as exc:
        exc.lines = lines
        raise
    return result, lines


def _serve(client: docker.DockerClient, image: str) -> str:
    """Run the image as Berth will (PORT set, Docker picks the host port) and return the page at /."""
    container = client.containers.run(
        image,
        detach=True,
        environment={"PORT": "5000"},
        ports={"5000/tcp": ("127.0.0.1", None)},
        labels=LABELS,
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]

        def get():
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2, verify=NO_TLS)
            except httpx.TransportError:
                return None
            return response if response.status_code == 200 else None

        return wait_for(get, timeout=30, interval=0.2, message=f"{image} to answer HTTP").text
    finally:
        container.remove(force=True)


@pytest.fixture(scope="session")
def built(docker_env):
    """Each sample app built once per session: name → (BuildResult, lines)."""
    cache = {}

    def build(name: str):
        if name not in cache:
            cache[name] = _build(APPS / name)
        return cache[name]

    return build


# On a fresh machine the first node, go and static builds also make their stack (30-90 s) and the first go
# build compiles the standard library into its cache (about 45 s).
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["python", "node", "go", "static", "dockerfile"])
def test_each_buildpack_builds_its_sample_app_and_the_image_answers_http_on_port(built, docker_env, name):
    result, lines = built(name)
    buildpack = get_buildpack(name)
    assert lines[0] == f"-----> {buildpack.display_name} app detected"
    assert any(line.startswith("Step 1/") for line in lines)
    assert lines[-1].startswith(f"-----> Built {result.tag} ")
    image = docker_env.images.get(result.tag)
    assert image.id == result.image_id
    assert image.labels[BUILDPACK_LABEL] == name
    assert result.buildpack == buildpack
    assert EXPECTED[name] in _serve(docker_env, result.tag)
    config = image.attrs["Config"]
    if name != "dockerfile":
        assert config["User"] == "app"
        assert config["WorkingDir"] == "/app"
        assert "PORT=5000" in config["Env"]
        assert config["Cmd"] == ["/bin/sh", "-c", f"exec {buildpack.default_web_command}"]


def test_python_dependencies_install_from_pypi_with_the_ca_bundle_which_stays_out_of_the_image(
    docker_env, sample_app, one_off_layers
):
    source = sample_app("python")
    # a requirements file no earlier build has seen, so pip really runs (and fetches through the proxy here)
    with open(source / "requirements.txt", "a") as requirements:
        requirements.write(f"# {uuid.uuid4()}\n")
    result, lines = _build(source)
    one_off_layers.append(lines)
    # pip's lines come indented under Berth's step
    assert "-----> Installing dependencies with pip" in lines
    assert any(line.strip().startswith("Successfully installed") and "flask-3.0.3" in line for line in lines)
    output = docker_env.containers.run(
        result.tag,
        [
            "sh",
            "-c",
            "python -c 'import flask; print(flask.__name__)'; find / -xdev -name '*berth-ca*' | wc -l",
        ],
        remove=True,
        labels=LABELS,
    ).decode()
    assert output.split() == ["flask", "0"]


def test_the_default_command_is_the_direct_child_of_tini_so_it_gets_sigterm(built, docker_env):
    # dash does not exec the last command of `sh -c`: without the CMD's `exec` the app would sit under a shell,
    # which dies on SIGTERM and leaves the app to be killed without a chance to finish its requests.
    result, _ = built("python")
    container = docker_env.containers.run(result.tag, detach=True, labels=LABELS)
    try:
        wait_for(
            lambda: "Running on" in container.logs().decode(),
            timeout=20,
            message="the app to start listening",
        )
        top = container.top()
        column = top["Titles"].index("CMD")
        assert [process[column] for process in top["Processes"]] == [
            "/usr/bin/tini -- /bin/sh -c exec python app.py",
            "python app.py",
        ]
    finally:
        container.remove(force=True)


def test_a_code_only_change_reuses_the_dependency_layer(docker_env, sample_app):
    source = sample_app("python")
    tag = _tag("python-rebuild")
    _build(source, tag=tag)
    app = source / "app.py"
    app.write_text(app.read_text().replace("hello from python", "hello again from python"))
    started = time.monotonic()
    result, lines = _build(source, tag=tag)
    elapsed = time.monotonic() - started
    pip_step = next(
        i for i, line in enumerate(lines) if line.startswith("Step ") and "berth-python install" in line
    )
    assert lines[pip_step + 1] == " ---> Using cache"
    assert elapsed < 20, f"a code-only rebuild took {elapsed:.1f}s"
    assert "hello again from python" in _serve(docker_env, result.tag)


def test_a_python_app_with_an_empty_requirements_file_builds_and_runs(docker_env, tmp_path):
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "app.py").write_text((APPS / "dockerfile" / "server.py").read_text())
    result, _ = _build(tmp_path)
    assert "hello from a Dockerfile" in _serve(docker_env, result.tag)


def test_a_pyproject_app_installs_its_project_dependencies(docker_env):
    result, lines = _build(APPS / "python-pyproject")
    assert result.buildpack.name == "python"
    assert "hello from a pyproject app" in _serve(docker_env, result.tag)


def test_a_node_app_without_a_lockfile_is_installed_with_npm_install(docker_env, sample_app):
    source = sample_app("node")
    (source / "package-lock.json").unlink()
    # `npm ci` would refuse to run without a lockfile, so a built image is the proof
    result, _ = _build(source)
    assert EXPECTED["node"] in _serve(docker_env, result.tag)


def test_a_static_site_without_public_serves_the_repository_but_not_dotfiles(docker_env, tmp_path):
    (tmp_path / "index.html").write_text("<h1>root site</h1>")
    (tmp_path / "style.css").write_text("h1 { color: teal }")
    (tmp_path / ".env").write_text("SECRET=1")
    result, _ = _build(tmp_path)
    assert result.buildpack.name == "static"
    container = docker_env.containers.run(
        result.tag,
        detach=True,
        environment={"PORT": "8080"},
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels=LABELS,
    )
    try:
        container.reload()
        base = f"http://127.0.0.1:{container.attrs['NetworkSettings']['Ports']['8080/tcp'][0]['HostPort']}"

        def get(path):
            try:
                return httpx.get(base + path, timeout=2)
            except httpx.TransportError:
                return None

        assert "root site" in wait_for(lambda: get("/"), timeout=20, message="nginx on $PORT=8080").text
        css = get("/style.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert get("/.env").status_code == 404
    finally:
        container.remove(force=True)


def test_a_failing_step_raises_build_error_naming_the_step_in_the_last_line(docker_env, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM berth/stack:bookworm\nRUN echo step two\nRUN echo about to fail && exit 3\nRUN echo never\n"
    )
    with pytest.raises(BuildError) as caught:
        _build(tmp_path)
    last = caught.value.lines[-1]
    assert last.startswith("error: the Dockerfile's step 3 failed: ")
    assert last.endswith("RUN echo about to fail && exit 3 returned a non-zero code: 3")
    assert str(caught.value) == last
    assert "about to fail" in caught.value.lines
    assert "never" not in caught.value.lines


def test_an_invalid_dockerfile_is_a_build_error(docker_env, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM berth/stack:bookworm\nFROBNICATE everything\n")
    with pytest.raises(
        BuildError,
        match="error: the Dockerfile could not be built: .*line 2: unknown instruction: FROBNICATE",
    ):
        _build(tmp_path)


def _slow_app(tmp_path: Path) -> str:
    marker = f"berth-slow-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM berth/stack:bookworm\nRUN echo started && sleep 300 && echo {marker}\n"
    )
    return marker


def _step_containers(client: docker.DockerClient, marker: str) -> list:
    return [
        c for c in client.containers.list(all=True, sparse=True) if marker in str(c.attrs.get("Command", ""))
    ]


def test_cancelling_stops_the_running_step(docker_env, tmp_path):
    marker = _slow_app(tmp_path)
    seen_running = []

    def cancelled() -> bool:
        # cancel once the step's container is really running
        if not seen_running and _step_containers(docker_env, marker):
            seen_running.append(time.monotonic())
        return bool(seen_running) and time.monotonic() - seen_running[0] > 1

    started = time.monotonic()
    with pytest.raises(BuildCancelled) as caught:
        _build(tmp_path, cancelled=cancelled, timeout=120)
    assert time.monotonic() - started < 30
    assert caught.value.lines[-1] == "error: the build was cancelled"
    assert "started" in caught.value.lines
    wait_for(
        lambda: not _step_containers(docker_env, marker), timeout=15, message="the step's container to go"
    )


def test_a_build_past_its_timeout_fails_and_stops(docker_env, tmp_path):
    marker = _slow_app(tmp_path)
    started = time.monotonic()
    with pytest.raises(BuildError) as caught:
        _build(tmp_path, timeout=5)
    assert not isinstance(caught.value, BuildCancelled)
    assert 5 <= time.monotonic() - started < 20
    assert caught.value.lines[-1] == "error: the build timed out after 5s"
    wait_for(
        lambda: not _step_containers(docker_env, marker), timeout=15, message="the step's container to go"
    )


def test_a_missing_ca_bundle_is_a_build_error(docker_env, tmp_path):
    with pytest.raises(BuildError, match="CA bundle /nonexistent.crt does not exist"):
        _build(APPS / "static", ca_bundle=Path("/nonexistent.crt"))


def test_a_templates_labels_are_one_step_and_the_image_carries_each_as_given(docker_env, tmp_path, settings):
    """The engine makes a LABEL step (a container made, committed, removed) for each label it is given: Berth's
    own templates set them in one; a value the Dockerfile would not keep as it is stays the engine's to set."""
    (tmp_path / "index.html").write_text("<h1>labels</h1>")
    steps: list[str] = []
    result, _ = _build(tmp_path, on_detail=steps.append, labels={**LABELS, "org.berth.test.note": "a-b_c.d"})
    label_steps = [line for line in steps if re.match(r"Step \d+/\d+ : LABEL ", line)]
    expected = {
        "org.berth.installation": settings.BERTH_INSTALLATION_ID,
        BUILDPACK_LABEL: "static",
        **LABELS,
        "org.berth.test.note": "a-b_c.d",
    }
    ours = [line for line in label_steps if "org.berth.installation" in line]
    assert len(ours) == 1 and all(key in ours[0] for key in expected), label_steps
    labels = docker_env.images.get(result.tag).labels
    assert {key: labels.get(key) for key in expected} == expected

    steps.clear()
    dollar = {**LABELS, "org.berth.test.note": '$HOME `x` "quoted"'}
    result, _ = _build(tmp_path, on_detail=steps.append, labels=dollar)
    assert docker_env.images.get(result.tag).labels["org.berth.test.note"] == '$HOME `x` "quoted"'
    engine_steps = [line for line in steps if " : LABEL " in line and "org.berth." in line]
    assert len(engine_steps) == len(expected), engine_steps  # one step a label: as given, nothing expanded


def test_a_repository_dockerfile_is_labelled_by_the_engine(docker_env, tmp_path, settings):
    (tmp_path / "Dockerfile").write_text('FROM berth/stack:bookworm\nCMD ["true"] \\\n')  # ends continuing
    result, _ = _build(tmp_path)
    labels = docker_env.images.get(result.tag).labels
    assert labels["org.berth.installation"] == settings.BERTH_INSTALLATION_ID
    assert labels[BUILDPACK_LABEL] == "dockerfile" and labels[SUITE_LABEL] == "builds"
