"""The workflow cards of issue 18: on the app page maintenance mode, preview apps, the repository it follows, its
scheduled jobs and promotion; on the team page pipelines and webhooks. Each form calls the service the API calls
(so each action is in the audit log), a refusal is shown beside its field with what was typed kept, and the role
rules are the API's: members change an app, viewers only see it; admins destroy pipelines and manage webhooks.
The router is the in-memory double."""

import html
import re

import pytest
from berth.apps.models import App
from berth.apps.services import app_create
from berth.audit.models import AuditEvent
from berth.builds.models import Build
from berth.hooks.models import Webhook, WebhookDelivery
from berth.jobs.models import CronJob, CronRun
from berth.pipelines.models import Pipeline, PipelineApp
from berth.pipelines.services import pipeline_app_set, pipeline_create
from berth.releases.models import Release
from berth.routing.router import get_router
from django.contrib.messages import get_messages
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_router(settings):
    settings.BERTH_ROUTER = "memory"
    router = get_router()
    yield router
    for hostname in list(router.maintenance()):
        router.host_maintenance_remove(hostname=hostname)


@pytest.fixture
def private_targets(monkeypatch):
    # the test's receivers are on 127.0.0.1, which Berth refuses as a webhook or repository target by default
    monkeypatch.setenv("BERTH_WEBHOOKS_ALLOW_PRIVATE", "1")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def field_error(response, error_id: str) -> str:
    assert response.status_code == 400, response.status_code
    match = re.search(rf'id="{error_id}"[^>]*>([^<]*)<', response.content.decode())
    assert match, f"no #{error_id} on the page"
    return html.unescape(match.group(1))


def audited(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


APP_FORMS = ('id="maintenance-form"', 'id="previews-form"', 'id="source-form"', 'id="cron-add"')


def test_a_member_sees_the_app_workflow_forms_and_a_viewer_only_the_card(client_as, world):
    member = client_as("member").get("/apps/demo/").content.decode()
    assert 'id="workflow"' in member
    assert all(form in member for form in APP_FORMS)
    viewer_response = client_as("viewer").get("/apps/demo/")
    viewer = viewer_response.content.decode()
    assert 'id="workflow"' in viewer and 'id="maintenance-state"' in viewer
    assert not any(form in viewer for form in APP_FORMS)
    # and a viewer's POST is refused like the API's (403), changing nothing
    refused = client_as("viewer").post("/apps/demo/maintenance", {"maintenance": "on"})
    assert refused.status_code == 403
    assert not App.objects.get(name="demo").maintenance


def test_maintenance_on_with_the_apps_own_page_then_off(client_as, world, memory_router):
    client = client_as("member")
    too_big = "<p>" + "x" * 9000 + "</p>"
    refused = client.post("/apps/demo/maintenance", {"maintenance": "on", "maintenance_page": too_big})
    assert "the limit is 8192" in field_error(refused, "maintenance-page-error")
    assert html.escape(too_big[:50]) in refused.content.decode()  # kept as typed
    assert memory_router.maintenance() == {} and not App.objects.get(name="demo").maintenance

    page = "<h1>Back soon</h1>"
    response = client.post("/apps/demo/maintenance", {"maintenance": "on", "maintenance_page": page})
    assert response.status_code == 302 and messages_of(response) == ["Maintenance mode on."]
    assert memory_router.maintenance() == {world.app.hostname: page}
    shown = client.get("/apps/demo/").content.decode()
    assert "the app&#x27;s own page" in shown or "the app's own page" in shown

    client.post("/apps/demo/maintenance", {"maintenance_page": page})  # the box unticked: off
    assert memory_router.maintenance() == {} and not App.objects.get(name="demo").maintenance
    actions = [
        e.action for e in AuditEvent.objects.filter(action__startswith="app.maintenance").order_by("id")
    ]
    assert actions == ["app.maintenance.on", "app.maintenance.off"]


def test_previews_on_with_excluded_keys_and_the_preview_apps_listed(client_as, world):
    client = client_as("member")
    refused = client.post("/apps/demo/previews", {"previews": "on", "preview_exclude": "GOOD_KEY bad-key"})
    assert field_error(refused, "preview-exclude-error")
    assert 'value="GOOD_KEY bad-key"' in refused.content.decode()
    assert not App.objects.get(name="demo").previews

    response = client.post(
        "/apps/demo/previews", {"previews": "on", "preview_exclude": "STRIPE_KEY, DATABASE_URL"}
    )
    assert response.status_code == 302
    app = App.objects.get(name="demo")
    assert app.previews and app.preview_exclude == ["STRIPE_KEY", "DATABASE_URL"]
    assert audited("app.update")[-1].data["preview_exclude"] == ["STRIPE_KEY", "DATABASE_URL"]

    App.objects.create(team=world.team, name="demo--feature-x", parent=app, preview_branch="feature/x")
    page = client.get("/apps/demo/").content.decode()
    assert 'data-preview="demo--feature-x"' in page and 'href="/apps/demo--feature-x/"' in page
    preview = client.get("/apps/demo--feature-x/").content.decode()
    assert re.search(
        r'id="preview-of">This app previews branch <code>feature/x</code> of <a href="/apps/demo/">', preview
    )


def test_following_a_repository_shows_the_secret_and_webhook_url_once(client_as, world, private_targets):
    client = client_as("member")
    refused = client.post("/apps/demo/source", {"url": "ftp://example.org/repo.git"})
    assert field_error(refused, "source-url-error") == "must be an https:// URL of a git repository"
    assert 'value="ftp://example.org/repo.git"' in refused.content.decode()

    url = "http://127.0.0.1:9/repo.git"
    response = client.post("/apps/demo/source", {"url": url})
    assert response.status_code == 302
    first = client.get("/apps/demo/").content.decode()
    secret = re.search(r'id="source-secret">([^<]+)<', first).group(1)
    assert len(secret) >= 40
    assert "http://testserver/hooks/git/demo" in first
    again = client.get("/apps/demo/").content.decode()
    assert secret not in again and 'id="source-secret"' not in again  # shown once
    assert f"Follows <code>{url}</code>" in again
    assert audited("app.source.set")[-1].data == {"url": url}

    client.post("/apps/demo/source/remove")
    assert App.objects.get(name="demo").source_url == ""
    assert audited("app.source.remove")


def test_scheduled_jobs_added_listed_with_their_last_run_and_removed(client_as, world):
    client = client_as("member")
    refused = client.post("/apps/demo/cron/add", {"schedule": "every minute", "command": "python tick.py"})
    assert field_error(refused, "cron-schedule-error")
    assert 'value="python tick.py"' in refused.content.decode()
    empty = client.post("/apps/demo/cron/add", {"schedule": "*/5 * * * *", "command": "  "})
    assert field_error(empty, "cron-command-error") == "must be 1-8192 characters"
    assert not CronJob.objects.exists()

    response = client.post("/apps/demo/cron/add", {"schedule": "*/5 * * * *", "command": "python tick.py"})
    assert response.status_code == 302
    job = CronJob.objects.get(app=world.app)
    now = timezone.now()
    CronRun.objects.create(
        job=job,
        due_at=now,
        status="succeeded",
        exit_code=0,
        started_at=now,
        finished_at=now + timezone.timedelta(seconds=3),
    )
    row = re.search(
        rf'data-cron-job="{job.pk}".*?</tr>', client.get("/apps/demo/").content.decode(), re.S
    ).group(0)
    assert "*/5 * * * *" in row and "python tick.py" in row and "succeeded (exit 0) in 3.0 s" in row

    client.post(f"/apps/demo/cron/{job.pk}/remove")
    assert not CronJob.objects.exists()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="cron.").order_by("id")] == [
        "cron.add",
        "cron.remove",
    ]


def test_promote_from_the_app_page(client_as, world):
    prod = app_create(team=world.team, name="demo-prod", actor=world.users["owner"])
    pipeline = pipeline_create(team=world.team, name="shop", actor=world.users["owner"])
    pipeline_app_set(pipeline=pipeline, app=world.app, stage="staging", actor=world.users["owner"])
    pipeline_app_set(pipeline=pipeline, app=prod, stage="production", actor=world.users["owner"])
    client = client_as("member")
    page = client.get("/apps/demo/").content.decode()
    assert 'data-field="stage">staging<' in page and 'data-next-app="demo-prod"' in page
    assert 'id="promote-form"' in page
    assert 'id="promote-form"' not in client_as("viewer").get("/apps/demo/").content.decode()

    refused = client_as("member").post("/apps/demo/promote")
    assert field_error(refused, "promote-error") == "demo has no live release to promote"

    Release.objects.filter(app=world.app).update(status="live")
    response = client_as("member").post("/apps/demo/promote")
    assert response.status_code == 302
    assert audited("pipeline.promote")[-1].target.startswith("demo v")
    build = Build.objects.get(app=prod)  # the downstream app deploys the same image, no rebuild
    assert build.source == Build.Source.IMAGE and build.image_ref == "demo:v1"
    assert messages_of(response) == [f"Promoting to demo-prod: build {build.pk}."]


TEAM_FORMS = ('id="pipeline-create"', "pipeline-app-form")


def test_pipelines_on_the_team_page(client_as, world):
    viewer = client_as("viewer").get("/teams/acme/").content.decode()
    assert 'id="team-workflow"' in viewer and not any(form in viewer for form in TEAM_FORMS)
    assert 'id="webhook-add"' not in viewer
    client = client_as("member")
    refused = client.post("/teams/acme/pipelines/new", {"name": "Bad Name"})
    assert field_error(refused, "pipeline-name-error").startswith("must be 2-30 characters")
    assert client.post("/teams/acme/pipelines/new", {"name": "shop"}).status_code == 302
    taken = client.post("/teams/acme/pipelines/new", {"name": "shop"})
    assert field_error(taken, "pipeline-name-error") == "a pipeline named 'shop' already exists"

    unknown = client.post("/teams/acme/pipelines/shop/apps", {"app": "nope", "stage": "staging"})
    assert field_error(unknown, "pipeline-app-error") == "team acme has no app 'nope'"
    bad_stage = client.post("/teams/acme/pipelines/shop/apps", {"app": "demo", "stage": "qa"})
    assert field_error(bad_stage, "pipeline-stage-error").startswith("must be one of development")
    assert (
        client.post("/teams/acme/pipelines/shop/apps", {"app": "demo", "stage": "staging"}).status_code == 302
    )
    page = client.get("/teams/acme/").content.decode()
    assert re.search(r'data-stage="staging">\s*<div data-app="demo">', page)
    assert 'data-action="destroy-pipeline"' not in page  # members do not destroy

    client.post("/teams/acme/pipelines/shop/apps/demo/remove")
    assert not PipelineApp.objects.exists()
    assert client.post("/teams/acme/pipelines/shop/destroy").status_code == 403
    admin = client_as("admin")
    assert 'data-action="destroy-pipeline"' in admin.get("/teams/acme/").content.decode()
    admin.post("/teams/acme/pipelines/shop/destroy")
    assert not Pipeline.objects.exists()
    actions = [e.action for e in AuditEvent.objects.filter(action__startswith="pipeline.").order_by("id")]
    assert actions == ["pipeline.create", "pipeline.app.set", "pipeline.app.remove", "pipeline.destroy"]


def test_webhooks_on_the_team_page_for_admins(client_as, world, private_targets):
    member = client_as("member")
    assert 'id="webhook-add"' not in member.get("/teams/acme/").content.decode()
    assert member.post("/teams/acme/webhooks/new", {"url": "http://127.0.0.1:9/hook"}).status_code == 403
    admin = client_as("admin")
    refused = admin.post(
        "/teams/acme/webhooks/new", {"url": "gopher://example.org/", "events": ["deploy.live"]}
    )
    assert field_error(refused, "webhook-url-error")
    assert 'value="deploy.live" checked' in refused.content.decode()
    none = admin.post("/teams/acme/webhooks/new", {"url": ""})
    assert field_error(none, "webhook-url-error") == "is required (at most 2000 characters)"

    response = admin.post(
        "/teams/acme/webhooks/new",
        {"url": "http://127.0.0.1:9/hook", "events": ["deploy.live", "deploy.failed"]},
    )
    assert response.status_code == 302
    webhook = Webhook.objects.get(team=world.team)
    assert webhook.events == ["deploy.live", "deploy.failed"]
    first = admin.get("/teams/acme/").content.decode()
    secret = re.search(r'id="webhook-secret">([^<]+)<', first).group(1)
    assert secret.startswith("whsec_")
    WebhookDelivery.objects.create(
        webhook=webhook, event="deploy.live", payload={}, status="failed", attempts=2, response_code=500,
        next_attempt_at=timezone.now(), last_error="HTTP 500",
    )  # fmt: skip
    again = admin.get("/teams/acme/").content.decode()
    assert secret not in again  # shown once
    assert re.search(
        r'data-field="delivery-status">failed \(500\)</td><td class="muted small">2 attempts: HTTP 500', again
    )

    admin.post(f"/teams/acme/webhooks/{webhook.pk}/remove")
    assert not Webhook.objects.exists()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="webhook.").order_by("id")] == [
        "webhook.add",
        "webhook.remove",
    ]


def test_in_chromium_the_app_workflow_card(browser, live_server, memory_router):
    """As a person uses it: a refused page beside its textarea and kept, then maintenance on; a refused schedule
    beside its field, then the job listed; a viewer sees the card without its forms. (The world is built here: the
    live server needs committed rows.)"""
    from tests.dashboard.conftest import PageOpener, build_world

    world = build_world()
    opener = PageOpener(browser, live_server.url)
    try:
        page = opener("member")
        page.goto("/apps/demo/#workflow")
        page.check("#maintenance-on")
        page.click("#maintenance-form summary")
        page.fill("#maintenance-page", "x" * 9000)
        page.click("#maintenance-form button[type=submit]")
        error = page.locator("#maintenance-page-error")
        error.wait_for()
        assert "the limit is 8192" in error.inner_text()
        assert page.locator("#maintenance-page").input_value() == "x" * 9000
        assert page.locator("#maintenance-page").get_attribute("aria-invalid") == "true"
        page.fill("#maintenance-page", "<h1>Back soon</h1>")
        page.click("#maintenance-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/apps/demo/#workflow$"))
        assert "every hostname answers 503" in page.locator("#maintenance-state").inner_text()
        assert memory_router.maintenance() == {world.app.hostname: "<h1>Back soon</h1>"}

        page.fill("#cron-schedule", "61 * * * *")
        page.fill("#cron-command", "python tick.py")
        page.click("#cron-add button[type=submit]")
        page.locator("#cron-schedule-error").wait_for()
        assert page.locator("#cron-command").input_value() == "python tick.py"
        page.fill("#cron-schedule", "*/5 * * * *")
        page.click("#cron-add button[type=submit]")
        page.wait_for_url(re.compile(r".*/apps/demo/#workflow$"))
        assert "python tick.py" in page.locator("#workflow-cron-list").inner_text()

        viewer = opener("viewer")
        viewer.goto("/apps/demo/#workflow")
        assert viewer.locator("#workflow").is_visible()
        assert viewer.locator("#maintenance-form, #cron-add, #source-form, #previews-form").count() == 0
    finally:
        opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"


def test_in_chromium_the_team_workflow_card(browser, live_server, private_targets):
    """An admin creates a pipeline (a taken name refused beside the field), puts an app in a stage, adds a webhook
    and copies its secret, shown once."""
    from tests.dashboard.conftest import PageOpener, build_world

    build_world()
    opener = PageOpener(browser, live_server.url)
    try:
        page = opener("admin")
        page.goto("/teams/acme/#team-workflow")
        page.fill("#pipeline-name", "Shop!")
        page.click("#pipeline-create button[type=submit]")
        page.locator("#pipeline-name-error").wait_for()
        assert page.locator("#pipeline-name").input_value() == "Shop!"
        page.fill("#pipeline-name", "shop")
        page.click("#pipeline-create button[type=submit]")
        page.wait_for_url(re.compile(r".*/teams/acme/#team-workflow$"))
        page.fill("#pipeline-app-shop", "demo")
        page.select_option('[data-pipeline="shop"] select[name=stage]', "staging")
        page.click('[data-pipeline="shop"] .pipeline-app-form button[type=submit]')
        page.wait_for_url(re.compile(r".*/teams/acme/#team-workflow$"))
        assert page.locator('[data-pipeline="shop"] [data-stage="staging"] [data-app="demo"]').count() == 1

        page.fill("#webhook-url", "http://127.0.0.1:9/hook")
        page.check('#webhook-events input[value="deploy.failed"]')
        page.click("#webhook-add button[type=submit]")
        page.wait_for_url(re.compile(r".*/teams/acme/#team-workflow$"))
        assert page.locator("#webhook-secret").inner_text().startswith("whsec_")
        assert "deploy.failed" in page.locator("#webhooks-list").inner_text()
        page.reload()
        assert page.locator("#webhook-secret").count() == 0
    finally:
        opener.close()
    assert opener.errors == [], f"JavaScript errors: {opener.errors}"
