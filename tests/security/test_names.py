"""Names and inputs: every name a tenant sends through the API is matched whole. A trailing newline, a carriage
return, a NUL, a Unicode line separator or a trailing space is refused with 400 and a JSON `detail`, and nothing
is created (no row, no audit event). Python's `$` accepts "name\\n"; these attacks are what that let through."""

import pytest
from berth.accounts.models import ApiToken, Invitation, Team
from berth.apps.models import App, ConfigVar, Domain, Formation
from berth.audit.models import AuditEvent
from berth.builds.models import Build

# What an attacker appends to an otherwise valid name.
SUFFIXES = {
    "newline": "\n",
    "carriage-return": "\r",
    "nul": "\x00",
    "line-separator": "\u2028",
    "trailing-space": " ",
    "tab": "\t",
}


def _counts() -> dict[str, int]:
    models = (App, Team, ApiToken, Invitation, ConfigVar, Domain, Build, AuditEvent)
    return {model.__name__: model.objects.count() for model in models}


def _formation_state() -> list:
    return sorted(Formation.objects.values_list("app_id", "process", "replicas", "constraints"))


def _app_state() -> list:
    return sorted(App.objects.values_list("name", "deploy_branch", "health_check_path", "buildpack"))


# Each case: (role, method, path, body given the bad suffix). The good form of each body is accepted (see
# test_the_clean_names_are_accepted), so a 400 below is about the suffix alone.
CASES = {
    "app-create": ("owner", "post", "/api/v1/apps", lambda s: {"name": "probe" + s, "team": "acme"}),
    "team-create": ("owner", "post", "/api/v1/teams", lambda s: {"name": "probe" + s}),
    "token-create": ("owner", "post", "/api/v1/tokens", lambda s: {"name": "laptop" + s}),
    "sign-in-token-name": (
        None,
        "post",
        "/api/v1/auth/token",
        lambda s: {"username": "the-owner", "password": "pw-123456", "name": "laptop" + s},
    ),
    "deploy-branch": ("owner", "patch", "/api/v1/apps/demo", lambda s: {"deploy_branch": "release" + s}),
    "health-check-path": ("owner", "patch", "/api/v1/apps/demo", lambda s: {"health_check_path": "/up" + s}),
    "buildpack": ("owner", "patch", "/api/v1/apps/demo", lambda s: {"buildpack": "python" + s}),
    "app-create-branch": (
        "owner",
        "post",
        "/api/v1/apps",
        lambda s: {"name": "probe", "team": "acme", "deploy_branch": "main" + s},
    ),
    "config-key": ("owner", "patch", "/api/v1/apps/demo/config", lambda s: {"GREETING" + s: "hi"}),
    "formation-process": (
        "owner",
        "patch",
        "/api/v1/apps/demo/formation",
        lambda s: [{"process": "web" + s, "replicas": 2}],
    ),
    "domain": ("owner", "post", "/api/v1/apps/demo/domains", lambda s: {"hostname": "api.example.org" + s}),
    "invitation-email": (
        "owner",
        "post",
        "/api/v1/teams/acme/invitations",
        lambda s: {"email": "new@example.test" + s, "role": "viewer"},
    ),
    "member-email": (
        "owner",
        "post",
        "/api/v1/teams/acme/members",
        lambda s: {"email": "newcomer@example.test" + s, "role": "viewer"},
    ),
    "image-deploy": (
        "owner",
        "post",
        "/api/v1/apps/demo/deploys",
        lambda s: {"image": "registry.example:5000/demo:v2" + s},
    ),
    "placement": (
        "owner",
        "put",
        "/api/v1/apps/demo/placement",
        lambda s: {"process": "web", "constraints": ["zone=a" + s]},
    ),
    "placement-process": (
        "owner",
        "put",
        "/api/v1/apps/demo/placement",
        lambda s: {"process": "web" + s, "constraints": []},
    ),
    "node-label-value": ("root", "patch", "/api/v1/nodes/any", lambda s: {"labels": {"zone": "a" + s}}),
    "node-label-key": ("root", "patch", "/api/v1/nodes/any", lambda s: {"labels": {"zone" + s: "a"}}),
}


@pytest.fixture
def attacker(world, make_user, token_client, settings):
    # these tests send many token requests on purpose: the brute-force guards (tests/security/test_auth.py) are
    # not what is tested here
    settings.BERTH_TOKEN_CREATIONS_PER_HOUR = 1_000_000
    settings.BERTH_LOGIN_FAILURES = settings.BERTH_LOGIN_FAILURES_PER_ADDRESS = 1_000_000
    root = make_user("root", is_superuser=True)
    world.users["root"] = root
    Formation.objects.get_or_create(app=world.app, process="web")

    def client(role):
        return token_client(world.users[role]) if role else token_client(None)

    return client


@pytest.mark.parametrize("suffix", SUFFIXES.values(), ids=SUFFIXES.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_name_with_a_control_character_or_trailing_space_is_refused_and_nothing_is_created(
    attacker, case, suffix
):
    role, method, path, body = case
    client = attacker(role)
    before = (_counts(), _formation_state(), _app_state())
    response = getattr(client, method)(path, body(suffix), format="json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert (_counts(), _formation_state(), _app_state()) == before


def test_the_clean_names_are_accepted(attacker, monkeypatch):
    # Each case above differs from an accepted request only by its suffix (except the ones that need a real
    # swarm or a real image: for those the clean form gets past validation to the next step).
    from berth.builds import services as build_services

    monkeypatch.setattr(
        build_services, "image_deploy", lambda **kwargs: (_ for _ in ()).throw(ValueError("x"))
    )
    outcomes = {}
    for name, (role, method, path, body) in CASES.items():
        response = getattr(attacker(role), method)(path, body(""), format="json")
        outcomes[name] = response.status_code
    accepted = {name for name, code in outcomes.items() if code < 300}
    assert accepted >= {
        "app-create",
        "team-create",
        "token-create",
        "sign-in-token-name",
        "deploy-branch",
        "health-check-path",
        "buildpack",
        "config-key",
        "formation-process",
        "domain",
        "invitation-email",
        "member-email",
    }, outcomes


def test_token_names_refuse_control_characters_anywhere(attacker):
    # A token's name is shown in lists and audit lines: an embedded newline would forge a second line.
    client = attacker("owner")
    before = ApiToken.objects.count()
    for name in ("lap\ntop", "lap\rtop", "lap\x1b[31mtop", "lap\u2029top", "lap\x7ftop"):
        response = client.post("/api/v1/tokens", {"name": name}, format="json")
        assert response.status_code == 400, name
        assert "name" in response.json()["detail"] or response.json().get("errors")
    assert ApiToken.objects.count() == before
