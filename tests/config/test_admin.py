"""Django admin: every control-plane model is registered with list_display, list_filter and search_fields,
its pages render, and config values never appear in clear."""

import pytest
from berth.accounts.models import ApiToken, Invitation, Membership, Team
from berth.accounts.services import token_create
from berth.apps.models import App, ConfigVar, Domain, Formation
from berth.audit.models import AuditEvent
from berth.releases.models import Release
from berth.releases.services import config_update
from django.contrib import admin
from django.urls import reverse

MODELS = [Team, Membership, Invitation, ApiToken, App, ConfigVar, Formation, Domain, Release, AuditEvent]


@pytest.fixture
def admin_client_with_data(world, client, make_user):
    config_update(
        app=world.app, changes={"SECRET_KEY": "clear-text-secret-value"}, actor=world.users["owner"]
    )
    token_create(user=world.users["owner"], name="laptop")
    client.force_login(make_user(is_superuser=True, is_staff=True))
    return client


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_model_admin_lists_filters_and_searches(model):
    model_admin = admin.site._registry[model]
    assert len(model_admin.list_display) > 1
    assert model_admin.list_filter and model_admin.search_fields


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_admin_pages_render_without_config_values(admin_client_with_data, model):
    meta = model._meta
    changelist = admin_client_with_data.get(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"), {"q": "a"}
    )
    assert changelist.status_code == 200
    obj = model.objects.order_by("pk").last()
    change = admin_client_with_data.get(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    )
    assert change.status_code == 200
    for page in (changelist, change):
        assert b"clear-text-secret-value" not in page.content
        assert b"value_encrypted" not in page.content
