"""Add-ons as a new user meets them (issue 14), against the whole running platform and a real PostgreSQL add-on on
the swarm: `addons:create postgres` (through the API the CLI speaks) attaches DATABASE_URL; an app that uses it is
pushed unchanged (tests/fixtures/apps/py-postgres-counter: psycopg from PyPI, its schema made by Procfile's
`release:` phase); data written through the router, `pg:backups:capture`, data changed, `pg:backups:restore`, and
the app answers with the data of the backup. The add-on's service and volume are removed afterwards."""

import shutil

import httpx
import pytest
from berth.addons.images import addon_image_build
from berth.addons.models import Addon
from berth.addons.selectors import addon_spec
from berth.runtime.addons import AddonRuntimeError, addon_service_remove

from tests.conftest import REPO_DIR
from tests.e2e.test_push_to_live import git

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
SAMPLE = REPO_DIR / "tests" / "fixtures" / "apps" / "py-postgres-counter"


@pytest.fixture
def addon_cleanup(tenant):
    addon_image_build("postgres", echo=lambda line: None)  # reuses an image whose recipe is current
    yield
    for addon in Addon.objects.filter(team=tenant.team):
        try:
            addon_service_remove(addon_spec(addon))
        except AddonRuntimeError:
            pass  # reported by the assertion that failed first


def test_create_push_migrate_write_capture_change_restore_and_the_data_is_back(
    berth_platform, tenant, repo, addon_cleanup
):
    app = tenant.app.name
    api = httpx.Client(
        base_url=f"{berth_platform.web_url}/api/v1",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=300,
    )
    created = api.post(f"/apps/{app}/addons", json={"kind": "postgres"})
    assert created.status_code == 201, created.text
    addon = created.json()["name"]
    assert created.json()["attachments"] == [{"app": app, "config_var": "DATABASE_URL"}]
    assert "DATABASE_URL" in api.get(f"/apps/{app}/config").json()

    for item in SAMPLE.iterdir():
        shutil.copy(item, repo / item.name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a counter in postgres")
    pushed = git(repo, "push", "berth", "main", check=False)
    assert pushed.returncode == 0, pushed.stderr + (berth_platform.logs / "worker.log").read_text()[-3000:]
    assert "migrated: table items" in pushed.stderr  # the release phase ran, its output relayed to the pusher

    site = httpx.Client(
        base_url=f"http://127.0.0.1:{berth_platform.router_port}",
        headers={"Host": f"{app}.localhost"},
        timeout=30,
    )
    for n in (1, 2, 3):
        assert site.post("/").text.strip() == f"items: {n}"

    captured = api.post(f"/apps/{app}/addons/{addon}/backups")
    assert captured.status_code == 201, captured.text
    backup = captured.json()["name"]

    for n in (4, 5):
        assert site.post("/").text.strip() == f"items: {n}"

    restored = api.post(f"/apps/{app}/addons/{addon}/backups/{backup}/restore", json={})
    assert restored.status_code == 200, restored.text
    assert "one transaction" in restored.json()["note"]  # what the app saw meanwhile
    assert site.get("/").text.strip() == "items: 3"
