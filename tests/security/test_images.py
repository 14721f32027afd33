"""Another team's image is one `FROM` away: every team's images sit on the same engine (and registry). Team B
(mallory, "intruders") tries to reach team A's build image by tag, id, short id, digest, `COPY --from`, an image
deploy and Berth's registry reference; each is refused and team A's file never shows in B's output. A build
of team A FROM its own app's image still works. The Dockerfile reader itself is tested without Docker at the end.
"""

import io
import re
import secrets
import subprocess
from types import SimpleNamespace

import httpx
import pytest

from tests.cli.conftest import run_berth
from tests.e2e.conftest import APP_PREFIX
from tests.e2e.test_builds_support import Repo

SECRET_DOCKERFILE = """\
FROM berth/stack:bookworm
COPY secret.txt /srv/site/index.html
CMD ["sh", "-c", "exec python3 -m http.server \\"$PORT\\" --directory /srv/site"]
"""
REFUSED = "not an image of this team's apps"


def _team(*, username: str, team_name: str, web_url: str, path):
    """A user, a team of their own, an API token and an app, with a git repository pushing to the app."""
    from berth.accounts.services import team_create, token_create
    from berth.apps.services import app_create
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.test", password="pw-123456"
    )
    team = team_create(name=team_name, actor=user)
    _, token = token_create(user=user, name="security")
    app = app_create(team=team, name=APP_PREFIX + secrets.token_hex(3), actor=user)
    repo = Repo(path, web_url=web_url, app=app.name, token=token)
    api = httpx.Client(base_url=f"{web_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return SimpleNamespace(user=user, team=team, token=token, app=app, repo=repo, api=api)


@pytest.fixture
def victim(berth_platform, tmp_path):
    """Team A, whose app was built from a Dockerfile that copies a secret into its image; `.image` is the
    image its release runs, `.secret` the file's content."""
    from berth.builds.models import Build

    team = _team(username="alice", team_name="victims", web_url=berth_platform.web_url, path=tmp_path / "a")
    team.secret = f"team-a-secret-{secrets.token_hex(8)}"
    team.repo.write({"Dockerfile": SECRET_DOCKERFILE, "secret.txt": team.secret + "\n"})
    team.repo.commit("secret")
    pushed = team.repo.push()
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    build = Build.objects.filter(app=team.app, status="succeeded").latest("pk")
    team.build = build
    team.image = build.image
    from berth.runtime.client import docker_client

    team.image_id = docker_client().images.get(build.image).id
    yield team
    team.api.close()


@pytest.fixture
def intruder(berth_platform, tmp_path):
    """Team B: mallory, who has an app of her own and knows team A's image references."""
    team = _team(
        username="mallory", team_name="intruders", web_url=berth_platform.web_url, path=tmp_path / "b"
    )
    yield team
    team.api.close()


def _push_dockerfile(team, dockerfile: str) -> subprocess.CompletedProcess:
    team.repo.write({"Dockerfile": dockerfile, "Procfile": "web: python3 -m http.server $PORT\n"})
    team.repo.commit(f"try {secrets.token_hex(3)}")
    return team.repo.push(force=True)


def _assert_refused_push(pushed: subprocess.CompletedProcess, victim, what: str) -> None:
    errors = [line for line in pushed.stderr.splitlines() if line.startswith("remote: error:")]
    assert victim.secret not in pushed.stderr + pushed.stdout, (what, pushed.stderr[-3000:])
    assert pushed.returncode != 0, (what, pushed.stderr[-3000:])
    assert any(line.startswith(f"remote: error: {what}: {REFUSED}") for line in errors), (what, errors)


def _attacks(victim) -> dict[str, str]:
    """Each Dockerfile mallory pushes, by the reference it names; every one would print team A's secret."""
    image, image_id = victim.image, victim.image_id
    repository = image.rpartition(":")[0]
    hexid = image_id.removeprefix("sha256:")
    cat = "RUN cat /srv/site/index.html\n"
    return {
        f"FROM {image}": f"FROM {image}\n{cat}",
        f"FROM {image_id}": f"FROM {image_id}\n{cat}",
        f"FROM {hexid[:12]}": f"FROM {hexid[:12]}\n{cat}",
        f"FROM sha256:{hexid[:10]}": f"FROM sha256:{hexid[:10]}\n{cat}",
        f"FROM {repository}@{image_id}": f"FROM {repository}@{image_id}\n{cat}",
        f"FROM docker.io/{image}": f"from   docker.io/{image} AS x\n{cat}",
        f"FROM {image}  (an ARG)": f"ARG BASE={image}\nFROM --platform=linux/amd64 ${{BASE}}\n{cat}",
        f"COPY --from={image}": (
            f"FROM berth/stack:bookworm AS {hexid[:4]}x\nCOPY \\\n  --from={image} /srv/site/index.html /x\n"
            "RUN cat /x\n"
        ),
        f"COPY --from={hexid[:12]}": (
            f"FROM berth/stack:bookworm\nCOPY --from={hexid[:12]} /srv/site/index.html /x\nRUN cat /x\n"
        ),
    }


def test_a_push_cannot_build_from_another_teams_image_by_tag_id_digest_or_copy_from(victim, intruder):
    for what, dockerfile in _attacks(victim).items():
        what = what.split("  (")[0]
        _assert_refused_push(_push_dockerfile(intruder, dockerfile), victim, what)
    # the same words for an image that does not exist: a refusal tells nothing of other teams' images
    missing = f"berth/{victim.app.name}:build-{secrets.token_hex(8)}"
    pushed = _push_dockerfile(intruder, f"FROM {missing}\n")
    assert f"remote: error: FROM {missing}: {REFUSED}" in pushed.stderr, pushed.stderr[-2000:]
    pushed = _push_dockerfile(intruder, "FROM sha256:0000000000\n")
    assert f"remote: error: FROM sha256:0000000000: {REFUSED}" in pushed.stderr, pushed.stderr[-2000:]
    # an invalid reference is refused as such, before the engine sees it
    pushed = _push_dockerfile(intruder, f"FROM {victim.image.upper()}\n")
    assert "not a valid image reference" in pushed.stderr and pushed.returncode != 0, pushed.stderr[-2000:]
    # and the build's tag says nothing guessable: not the global build number
    assert re.fullmatch(rf"berth/{victim.app.name}:build-[0-9a-f]{{16}}", victim.image), victim.image


def test_an_image_deploy_cannot_deploy_another_teams_image(victim, intruder, berth_platform):
    hexid = victim.image_id.removeprefix("sha256:")
    for reference in (victim.image, victim.image_id, hexid[:12], f"sha256:{hexid[:10]}"):
        answer = intruder.api.post(f"/apps/{intruder.app.name}/deploys", json={"image": reference})
        assert answer.status_code == 400, (reference, answer.status_code, answer.text)
        assert f"{reference}: {REFUSED}" in answer.text, answer.text
        assert victim.secret not in answer.text
    # the CLI says it in one line and exits non-zero (`berth deploy --image`)
    result = run_berth(
        "deploy",
        "--app",
        intruder.app.name,
        "--image",
        victim.image,
        home=intruder.repo.path,
        env={"BERTH_URL": berth_platform.web_url, "BERTH_TOKEN": intruder.token},
    )
    assert result.returncode != 0 and f"{victim.image}: {REFUSED}" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # nothing of team A ever ran as team B's app
    from berth.releases.models import Release

    assert not Release.objects.filter(app=intruder.app).exists()


def test_an_onbuild_trigger_of_a_base_image_cannot_reach_another_teams_image(victim, intruder):
    # an image on this machine (as if pulled from a public registry) whose trigger copies from team A's image:
    # the trigger runs inside mallory's build, where her Dockerfile says nothing of it
    from berth.runtime.client import docker_client

    client = docker_client(timeout=300)
    trap = f"t-sec-onbuild-{secrets.token_hex(3)}:1"
    dockerfile = (
        f"FROM berth/stack:bookworm\nONBUILD COPY --from={victim.image} /srv/site/index.html /stolen\n"
    )
    client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=trap, labels={"org.berth.test": "1"}, rm=True
    )
    try:
        pushed = _push_dockerfile(intruder, f"FROM {trap}\nRUN cat /stolen\n")
        _assert_refused_push(pushed, victim, f"FROM {trap}: its ONBUILD COPY --from={victim.image}")
    finally:
        client.images.remove(trap, force=True)


def test_a_team_builds_from_its_own_apps_image(victim, berth_platform, tmp_path):
    from berth.apps.services import app_create

    sibling = app_create(team=victim.team, name=APP_PREFIX + secrets.token_hex(3), actor=victim.user)
    repo = Repo(tmp_path / "sibling", web_url=berth_platform.web_url, app=sibling.name, token=victim.token)
    repo.write({"Dockerfile": f"FROM {victim.image}\nRUN cat /srv/site/index.html\n"})
    repo.commit("same team")
    pushed = repo.push()
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert victim.secret in pushed.stderr  # its own file: the RUN printed it


class TestWithBerthsRegistry:
    """With a registry every build is pushed as `<registry>/<app>@sha256:…`: that name is another door."""

    @pytest.fixture
    def platform_env(self, berth_registry) -> dict:
        return dict(berth_registry.env)

    def test_another_teams_registry_reference_is_refused_in_a_push_and_a_deploy(
        self, victim, intruder, berth_registry
    ):
        assert victim.image.startswith(f"{berth_registry.address}/{victim.app.name}@sha256:"), victim.image
        port = berth_registry.address.rpartition(":")[2]
        tagged = f"{berth_registry.address}/{victim.app.name}:{victim.build.registry_tag}"
        alias = f"localhost:{port}/{victim.app.name}:{victim.build.registry_tag}"
        for reference in (victim.image, tagged, alias):
            _assert_refused_push(
                _push_dockerfile(intruder, f"FROM {reference}\nRUN cat /srv/site/index.html\n"),
                victim,
                f"FROM {reference}",
            )
            answer = intruder.api.post(f"/apps/{intruder.app.name}/deploys", json={"image": reference})
            assert answer.status_code == 400 and f"{reference}: {REFUSED}" in answer.text, answer.text


# -- the Dockerfile reader, without Docker ----------------------------------------------------------------------


def _refs(text: str) -> list[tuple[str, str]]:
    from berth.builds.images import dockerfile_image_references

    return [(r.what, r.ref) for r in dockerfile_image_references(text)]


def test_the_reader_finds_from_copy_from_and_mounts_but_not_stages():
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.12\n"
        "FROM --platform=linux/amd64 ${BASE} AS Build\n"
        "RUN --mount=type=bind,from=cache/img:1,target=/c \\\n"
        "    --mount=type=cache,target=/root/.cache true\n"
        "from build\n"
        "COPY --from=BUILD /a /b\n"
        "COPY --from=0 /a /b\n"
        "COPY --chown=1:1 --from=other:2 /a /b\n"
        "ONBUILD COPY --from=trigger:3 /a /b\n"
        "FROM scratch\n"
    )
    assert _refs(text) == [
        ("FROM python:3.12", "python:3.12"),
        ("RUN --mount=…from=cache/img:1", "cache/img:1"),
        ("COPY --from=other:2", "other:2"),
        ("ONBUILD COPY --from=trigger:3", "trigger:3"),
    ]


def test_the_reader_joins_continuations_and_skips_comments_inside_them():
    text = "FROM berth/stack:bookworm\nRUN echo \\\n# a comment\n\n  done\nCOPY \\\n --from=x:1 a b\n"
    assert _refs(text) == [("FROM berth/stack:bookworm", "berth/stack:bookworm"), ("COPY --from=x:1", "x:1")]


def test_a_backtick_escape_directive_cannot_hide_a_from_inside_a_continued_line():
    # an engine that ignores the directive (it follows another) reads the FROM line as an instruction
    text = "# syntax=x\n# escape=`\nFROM berth/stack:bookworm\nRUN echo `\nFROM berth/other:1\n"
    assert ("FROM berth/other:1", "berth/other:1") in _refs(text)


@pytest.mark.parametrize(
    "text",
    [
        "FROM ${UNSET}\n",
        "ARG X\nFROM $X\n",
        "ARG TARGETARCH=amd64\nFROM berth/app${TARGETARCH}\n",
        "FROM busybox\nARG LATE=berth/x:1\nFROM $LATE\n",
        "ARG X=1\nFROM ${X/1/2}\n",
        'FROM "berth/x:1"\n',
        "COPY --from=$X /a /b\n",
        "RUN --mount=from=${X} true\n",
    ],
)
def test_a_reference_berth_cannot_resolve_is_refused(text):
    from berth.builds.images import ImageRefused, dockerfile_image_references

    with pytest.raises(ImageRefused):
        dockerfile_image_references(text)


def test_arg_defaults_substitute_as_the_engine_does():
    text = 'ARG A=berth\nARG B="${A}/stack"\nFROM ${B}:bookworm\nFROM ${NOPE:-x}\n'
    from berth.builds.images import ImageRefused

    with pytest.raises(ImageRefused):  # NOPE is no ARG: refused even with a default
        _refs(text)
    text = "ARG A=berth\nARG B=${A}/stack\nARG C\nFROM ${B}:bookworm\nFROM ${A:+busybox}\n"
    assert [ref for _, ref in _refs(text)] == ["berth/stack:bookworm", "busybox"]


@pytest.mark.parametrize(
    ("reference", "kind"),
    [
        ("berth/stack:bookworm", "stack"),
        ("berth/stack:bookworm-node", "stack"),
        ("berth/mine:build-1", "own"),
        ("docker.io/berth/mine", "own"),
        ("berth/theirs:build-1", "other"),
        ("index.docker.io/berth/theirs@sha256:" + "a" * 64, "other"),
        ("berth/nosuchapp", "other"),
        ("127.0.0.1:5000/theirs:build-1", "other"),
        ("localhost:5000/theirs@sha256:" + "a" * 64, "other"),
        ("127.0.0.1:5000/mine:1", "own"),
        ("127.0.0.1:5000/berth/stack:current", "stack"),
        ("127.0.0.1:5001/theirs:1", "registry"),
        ("python:3.12", "registry"),
        ("sha256:abcdef", "id"),
        ("abcdef012345", "id"),
        ("a" * 64, "id"),
    ],
)
def test_references_are_classified(settings, reference, kind):
    from berth.builds.images import _kind

    settings.BERTH_REGISTRY = "127.0.0.1:5000"
    settings.BERTH_STACK_IMAGE = ""
    assert _kind(reference, {"mine"}) == kind


@pytest.mark.parametrize(
    ("image", "ref", "allowed"),
    [
        ({"RepoTags": ["berth/stack:bookworm"]}, "berth/stack:bookworm", True),
        (
            {"RepoTags": ["berth/mine:b"], "Config": {"Labels": {"org.berth.image.team": "2"}}},
            "berth/mine:b",
            False,
        ),
        ({"RepoTags": ["berth/theirs:b"]}, "sha256:ab", False),  # built before the label
        ({"RepoTags": [], "RepoDigests": []}, "abcdef", False),  # an intermediate layer of someone's build
        ({"RepoTags": [], "Config": {"Labels": {"org.berth.image.team": "1"}}}, "abcdef", True),
        (
            {"RepoTags": ["python:3.12"], "RepoDigests": ["127.0.0.1:5000/theirs@sha256:" + "b" * 64]},
            "abc",
            True,
        ),
        ({"RepoTags": ["loaded:1"]}, "loaded:1", True),  # an admin's `docker load`
        ({"RepoTags": ["loaded:1"]}, "docker.io/library/loaded:1", True),
    ],
)
def test_images_are_allowed_by_label_name_and_id(settings, image, ref, allowed):
    from berth.builds.images import _image_allowed

    settings.BERTH_REGISTRY = "127.0.0.1:5000"
    assert _image_allowed(image, ref, "1", {"mine"}) is allowed
