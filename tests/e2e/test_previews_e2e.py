"""Preview apps through the running platform: a branch push makes <app>--<branch> (the parent's config without the
keys it keeps back), a second push updates it, deleting the branch destroys it; the push is answered at once."""

import httpx
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import image_app
from tests.e2e.test_push_to_live import commit_and_push, get, git, write_app

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def test_a_branch_push_makes_updates_and_deletes_its_preview_app(repo, tenant, berth_platform):
    from berth.apps.models import App
    from berth.apps.selectors import config_for_app
    from berth.builds.models import Build
    from berth.previews.services import preview_name
    from berth.runtime.client import docker_client

    parent = tenant.app
    api = httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=30,
    )
    assert commit_and_push(repo, "main line").returncode == 0
    assert api.patch(f"/apps/{parent.name}/config", json={"SHARED": "yes", "PAYMENTS_KEY": "live"}).is_success
    answer = api.patch(f"/apps/{parent.name}", json={"previews": True, "preview_exclude": ["PAYMENTS_KEY"]})
    assert answer.status_code == 200 and answer.json()["previews"] is True

    git(repo, "checkout", "-q", "-b", "feature/Login-Page")
    write_app(repo, "preview one")
    git(repo, "commit", "-qam", "preview one")
    pushed = git(repo, "push", "berth", "feature/Login-Page", check=False)
    assert pushed.returncode == 0, pushed.stderr
    name = preview_name(
        parent.name, "feature/Login-Page"
    )  # t-e2e-<6>--feature-login-page is too long: hashed
    assert len(name) == 30 and name.startswith(f"{parent.name}--feature-")
    assert f"remote: -----> Preview app {name} created for feature/Login-Page" in pushed.stderr
    assert f"remote:        it will answer at http://{name}.localhost" in pushed.stderr
    preview = App.objects.get(name=name)
    assert (preview.parent_id, preview.preview_branch) == (parent.pk, "feature/Login-Page")
    assert config_for_app(app=preview) == {"SHARED": "yes"}

    def served(text: str) -> bool:
        return get(berth_platform.router_port, f"{name}.localhost").text.strip() == text

    wait_for(lambda: served("preview one"), timeout=240, message="the preview to answer")
    assert get(berth_platform.router_port, f"{parent.name}.localhost").text.strip() == "main line"

    write_app(repo, "preview two")
    git(repo, "commit", "-qam", "preview two")
    pushed = git(repo, "push", "berth", "feature/Login-Page", check=False)
    assert pushed.returncode == 0 and f"Preview app {name} updated" in pushed.stderr
    wait_for(lambda: served("preview two"), timeout=240, message="the preview's second release")
    assert Build.objects.filter(app=preview).count() == 2

    deleted = git(repo, "push", "berth", ":feature/Login-Page", check=False)
    assert deleted.returncode == 0 and f"Preview app {name} destroyed" in deleted.stderr
    assert not App.objects.filter(name=name).exists()
    wait_for(
        lambda: get(berth_platform.router_port, f"{name}.localhost").status_code == 404,
        timeout=60,
        message="the preview's hostname to be gone from the router",
    )
    # and its services and images from the engine (its builds', their cache stages' and its releases'): each run
    # of this test left three images and a service behind while the platform's clean-up was still under way
    engine = docker_client()

    def preview_left() -> list[str]:
        services = engine.services.list(filters={"label": f"org.berth.app={name}"})
        images = [image["Id"] for image in engine.api.images(all=True) if image_app(image) == name]
        return [s.name for s in services] + images

    wait_for(lambda: not preview_left(), timeout=120, message="the preview's services and images to go")
