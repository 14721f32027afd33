"""Every `berth` command end to end: the installed script in a subprocess against a real live server."""

import json
import stat
import subprocess

import pytest

from tests.cli.conftest import PASSWORD, as_json, assert_one_error_line, make_user, ok, run_berth
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def login_as(username: str, live_server, tmp_path):
    """Another person on another machine: their own HOME, logged in."""
    home = tmp_path / username
    home.mkdir()
    make_user(username)

    def run(*args, **kwargs):
        return run_berth(*args, home=home, **kwargs)

    ok(run("login", "--url", live_server.url, "--username", username, "--password", PASSWORD))
    return run


# --- login, logout, whoami, tokens ------------------------------------------------------------------------


def test_login_stores_a_private_token_and_whoami_answers(berth, home, live_server, ada):
    out = ok(berth("login", "--url", live_server.url + "/", "--username", "ada", "--password", PASSWORD))
    assert out.startswith(f"Logged in to {live_server.url} as ada")
    path = home / ".config/berth/credentials.json"
    stored = json.loads(path.read_text())
    assert stored["url"] == live_server.url and stored["token"].startswith("berth_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ok(berth("whoami")) == "ada\n"
    me = as_json(berth("whoami", "--json"))
    assert me["username"] == "ada" and me["email"] == "ada@example.test" and me["teams"] == []


def test_logging_in_again_replaces_this_machines_token(berth, live_server, ada):
    for _ in range(2):
        ok(berth("login", "--url", live_server.url, "--username", "ada", "--password", PASSWORD))
    assert len(as_json(berth("tokens", "--json"))) == 1


def test_login_prompts_for_what_is_missing(berth, live_server, ada):
    result = berth("login", "--url", live_server.url, stdin=f"ada\n{PASSWORD}\n")
    assert "Logged in" in ok(result)
    assert ok(berth("whoami")) == "ada\n"


def test_login_with_a_wrong_password_is_one_error_line_and_stores_nothing(berth, home, live_server, ada):
    result = berth("login", "--url", live_server.url, "--username", "ada", "--password", "nope")
    assert_one_error_line(result, contains="wrong username or password")
    assert not (home / ".config/berth/credentials.json").exists()


def test_logout_revokes_the_token_on_the_server(cli, home, live_server):
    token = json.loads((home / ".config/berth/credentials.json").read_text())["token"]
    assert ok(cli("logout")) == f"Logged out of {live_server.url}\n"
    assert not (home / ".config/berth/credentials.json").exists()
    assert_one_error_line(cli("whoami"), contains="not logged in; run `berth login --url URL`")
    env = {"BERTH_URL": live_server.url, "BERTH_TOKEN": token}
    assert_one_error_line(cli("whoami", env=env), contains="log in again")
    assert_one_error_line(cli("logout"), contains="not logged in")


def test_logout_with_the_server_down_still_forgets_the_token(cli, home):
    path = home / ".config/berth/credentials.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps(stored | {"url": f"http://127.0.0.1:{free_port()}"}))
    out = ok(cli("logout"))
    assert "not revoked" in out or "could not be revoked" in out
    assert not path.exists()


def test_tokens_create_list_and_revoke_and_env_overrides(cli, live_server, tmp_path):
    created = as_json(cli("tokens:create", "ci", "--json"))
    assert created["name"] == "ci" and created["token"].startswith("berth_")
    listing = ok(cli("tokens"))
    assert listing.splitlines()[0].split() == ["ID", "NAME", "CREATED", "LAST", "USED", "EXPIRES"]
    assert any(line.split()[:2] == [str(created["id"]), "ci"] for line in listing.splitlines())

    # a CI job: no stored login at all, only the environment
    ci_home = tmp_path / "ci"
    ci_home.mkdir()
    env = {"BERTH_URL": live_server.url, "BERTH_TOKEN": created["token"]}
    assert ok(run_berth("whoami", home=ci_home, env=env)) == "ada\n"

    assert ok(cli("tokens:revoke", str(created["id"]))) == f"Revoked token {created['id']}\n"
    assert str(created["id"]) not in [line.split()[0] for line in ok(cli("tokens")).splitlines()]
    line = assert_one_error_line(run_berth("whoami", home=ci_home, env=env), contains="rejected your token")
    assert f"berth login --url {live_server.url}" in line
    assert_one_error_line(cli("tokens:revoke", str(created["id"])), contains="token not found")


# --- teams, members, audit ----------------------------------------------------------------------------------


def test_teams_list_and_create(cli):
    lines = ok(cli("teams")).splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED"]
    assert lines[2].split()[:2] == ["acme", "owner"]
    assert ok(cli("teams:create", "labs")) == "Created team labs; you are its owner\n"
    assert [t["name"] for t in as_json(cli("teams", "--json"))] == ["acme", "labs"]
    assert_one_error_line(cli("teams:create", "labs"), contains="already exists")
    # with two teams, team-scoped commands need --team
    assert_one_error_line(cli("members"), contains="several teams (acme, labs)")
    assert "ada" in ok(cli("members", "--team", "labs"))


def test_members_add_list_and_remove(cli, live_server, tmp_path):
    bob = login_as("bob", live_server, tmp_path)
    assert ok(cli("members:add", "bob@example.test", "--role", "viewer")) == "Added bob to acme as viewer\n"
    rows = as_json(cli("members", "--json"))
    assert {(m["username"], m["role"]) for m in rows} == {("ada", "owner"), ("bob", "viewer")}
    assert "bob@example.test" in ok(cli("members", "--team", "acme"))

    # what a viewer may not do is refused with the API's reason
    ok(cli("apps:create", "shop"))
    assert_one_error_line(bob("config", "-a", "shop"), contains="member")
    assert_one_error_line(bob("members:add", "ada", "--role", "viewer"), contains="admin")
    assert "shop" in ok(bob("apps"))

    assert ok(cli("members:remove", "bob")) == "Removed bob from acme\n"
    assert_one_error_line(bob("apps:info", "-a", "shop"), contains="not found")
    assert_one_error_line(cli("members:remove", "ada"), contains="owner")
    assert_one_error_line(
        cli("members:add", "nobody@example.test", "--role", "member"), contains="no such user"
    )


def test_audit_lists_what_happened_newest_first(cli, shop):
    ok(cli("config:set", "A=1", "-a", shop))
    lines = ok(cli("audit")).splitlines()
    assert lines[0].split() == ["WHEN", "ACTOR", "ACTION", "TARGET", "FROM"]
    actions = [row["action"] for row in as_json(cli("audit", "--json", "--team", "acme"))]
    assert actions[-2:] == ["app.create", "team.create"]
    assert "config.update" in actions


# --- apps -----------------------------------------------------------------------------------------------------


def test_apps_create_list_info_and_destroy(cli):
    out = ok(cli("apps:create", "shop"))
    assert out.startswith("Created shop in team acme: http://shop.")
    assert_one_error_line(cli("apps:create", "shop"), contains="already")
    rows = ok(cli("apps")).splitlines()
    assert rows[0].split() == ["NAME", "TEAM", "RELEASE", "URL"]
    assert rows[2].split()[:3] == ["shop", "acme", "-"]
    info = ok(cli("apps:info", "-a", "shop"))
    assert info.startswith("=== shop\n") and "Team:" in info and "acme" in info
    assert as_json(cli("apps:info", "-a", "shop", "--json"))["deploy_branch"] == "main"

    assert_one_error_line(cli("apps:destroy", "shop", "--confirm", "shpo"), contains="--confirm shop")
    assert ok(cli("apps:destroy", "shop", "--confirm", "shop")) == "Destroyed shop\n"
    assert_one_error_line(cli("apps:info", "-a", "shop"), contains="not found")
    assert ok(cli("apps")).startswith("You have no apps")


def test_an_unknown_app_is_the_apis_404_detail(cli):
    assert assert_one_error_line(cli("config", "-a", "ghost")) == "error: app 'ghost' not found"


# --- config and releases --------------------------------------------------------------------------------------


def test_config_set_get_unset_and_the_releases_they_make(cli, shop):
    assert ok(
        cli("config:set", "DATABASE_URL=postgres://db/shop?x=1", "DEBUG=0", "-a", shop)
    ).splitlines() == [
        "Set DATABASE_URL on shop",
        "Set DEBUG on shop",
    ]
    assert ok(cli("config", "-a", shop)) == "DATABASE_URL=postgres://db/shop?x=1\nDEBUG=0\n"
    assert as_json(cli("config", "-a", shop, "--json")) == {
        "DATABASE_URL": "postgres://db/shop?x=1",
        "DEBUG": "0",
    }
    assert ok(cli("config:get", "DATABASE_URL", "-a", shop)) == "postgres://db/shop?x=1\n"
    assert_one_error_line(cli("config:get", "NOPE", "-a", shop), contains="NOPE is not set on shop")
    assert ok(cli("config:unset", "DEBUG", "-a", shop)) == "Unset DEBUG on shop\n"
    assert as_json(cli("config", "-a", shop, "--json")) == {"DATABASE_URL": "postgres://db/shop?x=1"}

    lines = ok(cli("releases", "-a", shop)).splitlines()
    assert lines[0].split() == ["VERSION", "STATUS", "DESCRIPTION", "BY", "CREATED"]
    assert [line.split()[0] for line in lines[2:]] == ["v2", "v1"]
    assert "ada" in lines[2]
    info = ok(cli("releases:info", "v1", "-a", shop))
    assert info.startswith("=== shop v1\n") and "DATABASE_URL, DEBUG" in info
    assert as_json(cli("releases:info", "2", "-a", shop, "--json"))["config_keys"] == ["DATABASE_URL"]
    assert_one_error_line(cli("releases:info", "v9", "-a", shop), contains="not found")


# --- domains, formation, git remote ---------------------------------------------------------------------------


def test_domains_add_list_and_remove(cli, shop):
    assert ok(cli("domains", "-a", shop)) == "shop has no custom domains.\n"
    assert ok(cli("domains:add", "www.shop.test", "-a", shop)) == "Added www.shop.test to shop\n"
    assert ok(cli("domains", "-a", shop)).splitlines()[2].split()[0] == "www.shop.test"
    assert_one_error_line(cli("domains:add", "www.shop.test", "-a", shop))
    assert ok(cli("domains:remove", "www.shop.test", "-a", shop)) == "Removed www.shop.test from shop\n"
    assert as_json(cli("domains", "-a", shop, "--json")) == []


def test_ps_scale_changes_the_formation(cli, shop, ada):
    from berth.apps.models import App
    from berth.releases.services import release_create

    app = App.objects.get(name=shop)
    release_create(
        app=app, image="shop:v1", procfile={"web": "serve", "worker": "work"}, description="", actor=ada
    )
    lines = ok(cli("ps:scale", "web=3", "worker=1", "-a", shop)).splitlines()
    assert lines[0].split() == ["PROCESS", "REPLICAS", "MEMORY", "CPU"]
    assert [line.split()[:2] for line in lines[2:]] == [["web", "3"], ["worker", "1"]]
    formation = as_json(cli("apps:info", "-a", shop, "--json"))["formation"]
    assert {f["process"]: f["replicas"] for f in formation} == {"web": 3, "worker": 1}
    assert_one_error_line(cli("ps:scale", "clock=1", "-a", shop), contains="unknown process type")


def test_git_remote_points_the_repository_at_the_app_and_commands_use_it(cli, shop, live_server, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert_one_error_line(cli("config", cwd=repo), code=2, contains="-a APP")

    expected = f"{live_server.url}/git/shop.git"
    assert ok(cli("git:remote", "-a", shop, cwd=repo)) == f"Set git remote berth to {expected}\n"
    remote = subprocess.run(["git", "remote", "get-url", "berth"], cwd=repo, capture_output=True, text=True)
    assert remote.stdout.strip() == expected
    ok(cli("git:remote", "-a", shop, cwd=repo))  # again: updates, does not fail on the existing remote
    # git gets the token from the CLI (a credential helper), so `git push berth main` needs no password prompt
    helper = subprocess.run(
        ["git", "config", f"credential.{live_server.url}.helper"], cwd=repo, capture_output=True, text=True
    )
    assert helper.stdout.strip().endswith("berth git:credentials")
    host = live_server.url.split("://", 1)[1]
    answer = cli("git:credentials", "get", cwd=repo, stdin=f"protocol=http\nhost={host}\n\n")
    assert ok(answer).startswith("username=berth\npassword=berth_")
    assert ok(cli("git:credentials", "get", cwd=repo, stdin="protocol=http\nhost=elsewhere.test\n\n")) == ""

    ok(cli("config:set", "FROM_REMOTE=1", cwd=repo))
    assert ok(cli("config:get", "FROM_REMOTE", cwd=repo)) == "1\n"
    assert ok(cli("apps:info", cwd=repo)).startswith("=== shop\n")

    assert_one_error_line(cli("git:remote", "-a", "ghost", cwd=repo), contains="not found")
    remote = subprocess.run(["git", "remote", "get-url", "berth"], cwd=repo, capture_output=True, text=True)
    assert remote.stdout.strip() == expected
