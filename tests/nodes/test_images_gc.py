"""`manage.py images_gc` on one node (no registry): the images of all but the last N releases, the live one and
what is in flight leave this engine; a running build's image and a release a rollback made from an old image
keep theirs; pruned releases are marked (a rollback to them is refused)."""

import io
import secrets

import docker.errors
import pytest
from berth.builds.models import build_cache_ref, build_run_ref
from django.core.management import call_command

pytestmark = [pytest.mark.docker]


@pytest.fixture
def app(db):
    from berth.accounts.services import team_create
    from berth.apps.services import app_create
    from django.contrib.auth import get_user_model

    suffix = secrets.token_hex(3)
    user = get_user_model().objects.create_user(username=f"gc-{suffix}", password="x")
    return app_create(name=f"t-gc-{suffix}", team=team_create(name=f"gc-{suffix}", actor=user), actor=user)


@pytest.fixture
def images(app):
    """berth/<app>:build-1..6, six distinct tiny images (a label each, no layer of their own); removed after."""
    from berth.runtime.client import docker_client

    client = docker_client()
    tags = []
    for number in range(1, 7):
        dockerfile = f"FROM berth/stack:bookworm\nLABEL org.berth.test=1 build={app.name}-{number}\n"
        tag = f"berth/{app.name}:build-{number}"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        tags.append(tag)
    yield tags
    for tag in tags:
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass


def present(tag: str) -> bool:
    from berth.runtime.client import docker_client

    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def test_images_gc_keeps_the_last_releases_the_live_one_and_work_in_flight(app, images, settings, capsys):
    from berth.builds.models import Build
    from berth.releases.models import Release
    from berth.releases.services import ImagePruned, release_create, release_image_available

    settings.BERTH_REGISTRY = ""
    statuses = {1: "superseded", 2: "live", 3: "superseded", 4: "failed"}
    for version, status in statuses.items():
        release_create(
            app=app, image=images[version - 1], procfile={}, description="", actor=None, status=status
        )
    # v5 rolled back to v1: v1's image is in use by a kept release, so it stays even though v1 is old
    release_create(
        app=app, image=images[0], procfile={}, description="rollback", actor=None, status="superseded"
    )
    # build 6's image is being made right now (no release yet): never touched
    running = Build.objects.create(app=app, source="git", status="building")
    running_tag = running.image_tag
    from berth.runtime.client import docker_client

    docker_client().images.get(images[5]).tag(*running_tag.rsplit(":", 1))
    # the app's dependency cache (its last build's dependency stage) is kept for its next build
    cache_ref = build_cache_ref(app_name=app.name)
    docker_client().images.get(images[5]).tag(*cache_ref.rsplit(":", 1))
    # and its run cache (its last image up to its dependencies), which its next image starts from
    run_ref = build_run_ref(app_name=app.name)
    docker_client().images.get(images[5]).tag(*run_ref.rsplit(":", 1))

    call_command("images_gc", "--app", app.name, "--keep", "2")

    printed = capsys.readouterr().out
    assert "1 apps: 1 releases pruned, 0 manifests deleted from the registry" in printed
    # kept: v5 and v4 (the last 2), v2 (live), and v1's image (v5 runs it); pruned: v3
    rows = {r.version: r for r in Release.objects.filter(app=app)}
    assert [v for v, r in sorted(rows.items()) if r.image_pruned_at] == [3]
    assert not present(images[2])
    assert not present(images[4])  # a build image no release names (its build is over): removed too
    assert all(present(images[i]) for i in (0, 1, 3)), images
    assert present(running_tag)
    assert present(cache_ref)
    assert present(run_ref)
    with pytest.raises(ImagePruned):
        release_image_available(rows[3])
    release_image_available(rows[1])

    # a second run finds nothing more to do
    call_command("images_gc", "--app", app.name, "--keep", "2")
    assert "0 releases pruned" in capsys.readouterr().out
    for tag in (running_tag, cache_ref, run_ref):
        try:
            docker_client().images.remove(tag)
        except docker.errors.ImageNotFound:
            pass


def test_a_destroyed_apps_images_and_stopped_containers_leave_this_engine(app, images, settings):
    """After a destroy: a finished one-off of the app (a stopped container) would pin its image; both go."""
    from berth.nodes.images import app_images_remove
    from berth.runtime.client import docker_client

    settings.BERTH_REGISTRY = ""  # this engine only
    client = docker_client()
    cache_ref = build_cache_ref(app_name=app.name)  # the app's dependency cache goes with it
    client.images.get(images[1]).tag(*cache_ref.rsplit(":", 1))
    run_ref = build_run_ref(app_name=app.name)  # and its run cache
    client.images.get(images[1]).tag(*run_ref.rsplit(":", 1))
    finished = client.containers.run(
        images[0], ["true"], labels={"org.berth.app": app.name, "org.berth.test": "1"}, detach=True
    )
    try:
        finished.wait(timeout=30)
        report = app_images_remove(name=app.name)
        assert not [t for t in [*images, cache_ref, run_ref] if present(t)], report.as_dict()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(finished.id)
        assert report.errors == []
    finally:
        try:
            finished.remove(force=True)
        except docker.errors.NotFound:
            pass


def test_a_build_ending_while_the_gc_looks_keeps_its_new_image(app, images):
    """A running build's image is kept by its tag; when the build ends just after the GC looked that tag up (not
    there yet), its new image is still kept, not removed before it is pushed. The engine is the real one: the
    build ends (a real image is built) at that moment."""
    from berth.nodes.images import app_repositories
    from berth.runtime.client import docker_client
    from berth.runtime.images import local_images_remove

    client = docker_client()
    new = f"berth/{app.name}:build-new"

    class BuildEndsAfterTheLookup:
        def __init__(self, api):
            self._api, self.ended = api, False

        def __getattr__(self, name):
            return getattr(self._api, name)

        def inspect_image(self, ref):
            try:
                return self._api.inspect_image(ref)
            except docker.errors.NotFound:
                if ref == new and not self.ended:
                    self.ended = True
                    dockerfile = f"FROM berth/stack:bookworm\nLABEL org.berth.test=1 build={app.name}-new\n"
                    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=new, rm=True)
                raise

    class Engine:
        api = BuildEndsAfterTheLookup(client.api)

    try:
        removed = local_images_remove(
            app_name=app.name, repositories=app_repositories(app.name), keep={new, images[5]}, client=Engine()
        )
        assert Engine.api.ended
        assert present(new), removed
        assert sorted(removed.removed) == sorted(images[:5]) and not removed.errors
        assert present(images[5])
    finally:
        try:
            client.images.remove(new)
        except docker.errors.ImageNotFound:
            pass
