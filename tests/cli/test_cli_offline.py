"""The CLI without a Berth server: parsing, stored credentials, git remotes and errors as one line."""

import json
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from berth.cli import client as cli_client
from berth.cli.commands import COMMANDS, assignments
from berth.cli.main import main
from berth.cli.output import table

from tests.cli.conftest import BERTH, assert_one_error_line
from tests.conftest import free_port

SPEC_COMMANDS = (
    "login logout whoami teams teams:create teams:quotas members members:add members:remove tokens tokens:create "
    "tokens:revoke apps apps:create apps:info apps:destroy config config:get config:set config:unset domains "
    "domains:add domains:remove releases releases:info audit git:remote ps:scale builds builds:info builds:output "
    "builds:cancel builds:cache:clear deploy rollback ps run runs:output logs events git:credentials ps:restart nodes nodes:add nodes:drain nodes:activate nodes:label nodes:remove ps:place restart"
    " certs certs:add certs:remove certs:renew https:redirect https:hsts"
    " cron cron:add cron:remove webhooks webhooks:add webhooks:remove webhooks:deliveries"
    " drains drains:add drains:remove"
    " users users:create users:disable users:enable users:password-reset maintenance maintenance:on maintenance:off"
    " pipelines pipelines:create pipelines:info pipelines:add pipelines:remove pipelines:destroy pipelines:promote"
    " previews previews:on previews:off sources sources:set sources:remove"
    " addons addons:create addons:info addons:attach addons:detach addons:destroy addons:recover pg:psql redis:cli"
    " pg:credentials:rotate"
    " pg:backups pg:backups:capture pg:backups:info pg:backups:verify pg:backups:download pg:backups:restore"
    " pg:backups:schedule pg:backups:unschedule redis:backups redis:backups:capture redis:backups:info"
    " redis:backups:verify redis:backups:download redis:backups:restore redis:backups:schedule"
    " redis:backups:unschedule"
).split()


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_the_command_table_has_exactly_the_documented_commands():
    assert sorted(COMMANDS) == sorted(SPEC_COMMANDS)


def test_version_prints_the_package_version(berth):
    result = berth("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "berth 0.1.0"


@pytest.mark.parametrize("words", [["help"], ["-h"], ["--help"], []])
def test_help_lists_every_command(berth, words):
    result = berth(*words)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(SPEC_COMMANDS) <= listed


def test_help_for_one_command_shows_its_options(berth):
    result = berth("help", "config:set")
    assert result.returncode == 0
    assert "KEY=VALUE" in result.stdout and "--app" in result.stdout


def test_unknown_command_is_a_one_line_usage_error(berth):
    line = assert_one_error_line(berth("dpeloy"), code=2, contains="unknown command 'dpeloy'")
    assert "choose from" not in line


def test_missing_argument_is_a_one_line_usage_error(berth):
    assert_one_error_line(berth("teams:create"), code=2, contains="required")


def test_bad_role_is_a_usage_error(berth):
    assert_one_error_line(berth("members:add", "a@example.com", "--role", "god"), code=2, contains="--role")


def test_not_logged_in_says_how_to_log_in(berth):
    result = berth("apps")
    assert result.stderr == "error: not logged in; run `berth login --url URL`\n"
    assert result.returncode == 1


@pytest.mark.parametrize("word", ["NOEQUALS", "=value", "1KEY=x", "BAD-KEY=x"])
def test_config_set_rejects_malformed_pairs_before_any_request(berth, word):
    # not logged in on purpose: the local check must come first
    assert_one_error_line(berth("config:set", "GOOD=1", word, "-a", "demo"), code=2, contains=repr(word))


def test_config_set_values_may_contain_equals_signs_and_be_empty():
    assert assignments(["URL=postgres://a/b?x=1", "EMPTY="], "KEY=VALUE") == {
        "URL": "postgres://a/b?x=1",
        "EMPTY": "",
    }


@pytest.mark.parametrize("word", ["web", "web=three", "web=-1", "=2"])
def test_ps_scale_rejects_malformed_sizes(berth, word):
    assert_one_error_line(berth("ps:scale", word, "-a", "demo"), code=2)


def test_ps_scale_leaves_process_names_to_the_server(berth):
    # `worker-2` is a valid process type; the command gets as far as needing a login
    assert_one_error_line(berth("ps:scale", "worker-2=1", "-a", "demo"), contains="not logged in")


def test_releases_info_rejects_a_bad_version(berth):
    assert_one_error_line(berth("releases:info", "latest", "-a", "demo"), code=2, contains="'latest'")


def test_apps_destroy_refuses_without_a_matching_confirm(berth):
    assert_one_error_line(berth("apps:destroy", "demo"), contains="--confirm demo")
    assert_one_error_line(berth("apps:destroy", "demo", "--confirm", "other"), contains="--confirm demo")


def test_an_app_command_outside_a_repo_without_a_says_how_to_name_the_app(berth, home):
    assert_one_error_line(berth("config"), code=2, contains="-a APP")


def test_the_app_comes_from_the_berth_git_remote(tmp_path, monkeypatch):
    git("init", "-q", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli_client.app_from_git_remote() is None
    git("remote", "add", "berth", "https://berth.example.com/git/shop-api.git", cwd=tmp_path)
    assert cli_client.app_from_git_remote() == "shop-api"
    git("remote", "set-url", "berth", "http://127.0.0.1:8000/prefix/git/blog", cwd=tmp_path)
    assert cli_client.app_from_git_remote() == "blog"


def test_git_remote_outside_a_repo_is_an_error(berth, home):
    env = {"BERTH_URL": "http://127.0.0.1:9", "BERTH_TOKEN": "x"}
    assert_one_error_line(berth("git:remote", "-a", "demo", env=env), contains="not in a git repository")


def test_git_remote_needs_a(berth):
    assert_one_error_line(berth("git:remote"), code=2, contains="-a/--app")


def test_server_down_names_the_url(berth):
    url = f"http://127.0.0.1:{free_port()}"
    result = berth("whoami", env={"BERTH_URL": url, "BERTH_TOKEN": "x"})
    assert_one_error_line(result, contains=f"error: cannot reach Berth at {url}: ")


def test_login_to_a_server_that_is_down_stores_nothing(berth, home):
    url = f"http://127.0.0.1:{free_port()}"
    result = berth("login", "--url", url, "--username", "u", "--password", "p")
    assert_one_error_line(result, contains="cannot reach Berth")
    assert not (home / ".config/berth/credentials.json").exists()


def test_login_rejects_a_url_without_scheme(berth):
    assert_one_error_line(
        berth("login", "--url", "berth.example.com", "--username", "u", "--password", "p"), code=2
    )


def test_login_without_a_terminal_and_missing_values_fails_in_one_line(berth):
    assert_one_error_line(berth("login", "--url", "http://127.0.0.1:9"), contains="no input")


def test_login_defaults_to_berth_url(berth):
    url = f"http://127.0.0.1:{free_port()}"
    result = berth("login", "--username", "u", "--password", "p", env={"BERTH_URL": url})
    assert_one_error_line(result, contains=f"cannot reach Berth at {url}")


def test_a_closed_pipe_is_not_an_error(home):
    process = subprocess.Popen([BERTH, "help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    assert process.wait(timeout=30) == 0
    assert process.stderr.read() == b""


def test_credentials_are_private(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    path = cli_client.save_credentials(
        cli_client.Credentials(url="http://b", token="berth_secret", token_id=4)
    )
    assert path == home / ".config/berth/credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": "http://b", "token": "berth_secret", "token_id": 4}
    assert cli_client.load_credentials() == cli_client.Credentials("http://b", "berth_secret", 4)
    assert cli_client.delete_credentials() and cli_client.load_credentials() is None


def test_environment_overrides_the_stored_login(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("BERTH_URL", raising=False)
    monkeypatch.delenv("BERTH_TOKEN", raising=False)
    cli_client.save_credentials(cli_client.Credentials(url="http://stored", token="stored-token"))
    monkeypatch.setenv("BERTH_TOKEN", "ci-token")
    assert cli_client.current_credentials().token == "ci-token"
    assert cli_client.current_credentials().url == "http://stored"
    monkeypatch.setenv("BERTH_URL", "https://ci.example.com/")
    assert cli_client.current_credentials().url == "https://ci.example.com"


def test_an_unwritable_config_folder_is_one_error_line(home, monkeypatch):
    (home / ".config").write_text("a file where the folder should be")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(cli_client.CliError, match="cannot save the credentials"):
        cli_client.save_credentials(cli_client.Credentials(url="http://b", token="t"))


def test_an_unexpected_answer_is_still_one_line(berth, not_berth):
    # JSON, but not the shape the CLI expects: worth a bug report, still not a traceback
    result = berth("members", "--team", "x", env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert_one_error_line(result, contains="please report this")


def test_a_damaged_credentials_file_is_one_error_line(berth, home):
    path = home / ".config/berth/credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert_one_error_line(berth("whoami"), contains="credentials.json")


def test_tables_align_columns_and_show_missing_values_as_dash():
    text = table(
        [{"n": "web", "r": 3}, {"n": "worker-long", "r": None}],
        ["NAME", "REPLICAS"],
        lambda row: [row["n"], row["r"]],
        empty="none",
    )
    assert text.splitlines() == [
        "NAME         REPLICAS",
        "-----------  --------",
        "web          3",
        "worker-long  -",
    ]
    assert table([], ["A"], lambda row: [], empty="none") == "none"


def test_main_returns_exit_codes_instead_of_exiting(capsys):
    assert main(["--version"]) == 0
    assert main(["nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command")


PS_ROWS = [
    {
        "id": "k2x9w3bq0v7m4n1p",
        "process": "worker",
        "release": 3,
        "state": "running",
        "desired_state": "running",
        "node": "n0de",
        "address": None,
        "port": None,
        "started_at": "2026-11-27T10:00:01.5Z",
        "restarts": 0,
        "error": None,
    },
    {
        "id": "a1b2c3d4e5f6a7b8",
        "process": "web",
        "release": 3,
        "state": "starting",
        "desired_state": "running",
        "node": "n0de",
        "address": "127.0.0.1",
        "port": 30001,
        "started_at": None,
        "restarts": 2,
        "error": "task: non-zero exit (1)",
    },
]
FORMATION = [
    {"process": "web", "replicas": 2, "memory_mb": None, "cpu": None},
    {"process": "worker", "replicas": 1, "memory_mb": 256, "cpu": None},
]
PLACEMENT = [{"process": "web", "constraints": ["zone=a"]}, {"process": "worker", "constraints": []}]
BUILDING = {"id": 7, "app": "demo", "status": "building", "status_reason": "", "log": ""}


class _Answers(BaseHTTPRequestHandler):
    """A web server that is not Berth: HTML pages and a failing endpoint."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        status, body, kind = {
            "/api/v1/me": (200, b"<html>welcome</html>", "text/html"),
            "/api/v1/apps": (500, b"<html>boom</html>", "text/html"),
            "/api/v1/teams": (404, b"<html>not found</html>", "text/html"),
            "/api/v1/tokens": (403, b'{"detail": "only an admin may"}', "application/json"),
            "/api/v1/teams/x/members": (200, b'{"unexpected": true}', "application/json"),
            "/api/v1/apps/demo/config": (
                200,
                '{"GREETING": "caf\u00e9 \u2500"}'.encode(),
                "application/json",
            ),
            "/api/v1/apps/demo/ps": (200, json.dumps(PS_ROWS).encode(), "application/json"),
            "/api/v1/apps/demo/formation": (200, json.dumps(FORMATION).encode(), "application/json"),
            "/api/v1/apps/demo/placement": (200, json.dumps(PLACEMENT).encode(), "application/json"),
            "/api/v1/apps/old/ps": (200, b"[]", "application/json"),
            "/api/v1/apps/old/formation": (200, json.dumps(FORMATION[:1]).encode(), "application/json"),
            "/api/v1/apps/next/ps": (200, b"[]", "application/json"),
            # a server whose formation carries the constraints: no second request (this one has no /placement)
            "/api/v1/apps/next/formation": (
                200,
                json.dumps([{**FORMATION[0], "constraints": ["zone=b"]}]).encode(),
                "application/json",
            ),
            # a server from before `ps:place`: no such route
            "/api/v1/apps/old/placement": (404, b'{"detail": "Not found."}', "application/json"),
            "/api/v1/apps/demo/builds/7": (200, json.dumps(BUILDING).encode(), "application/json"),
            # the stream ends without the `[build 7 ...]` line, as when the server gives up or the connection drops
            "/api/v1/apps/demo/builds/7/output": (200, b"one\ntwo\n", "text/plain"),
        }[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def not_berth():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["whoami"], "(HTTP 200, not JSON); is this a Berth server?"),
        (["apps"], "the server failed (HTTP 500)"),
        (["teams"], "HTTP 404 on GET /api/v1/teams"),
        (["tokens"], "error: only an admin may"),
    ],
)
def test_odd_answers_from_the_server_are_one_error_line(berth, not_berth, words, message):
    result = berth(*words, env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert_one_error_line(result, contains=message)


def test_text_the_terminal_cannot_encode_is_replaced_not_a_traceback(berth, not_berth):
    env = {"BERTH_URL": not_berth, "BERTH_TOKEN": "x", "PYTHONIOENCODING": "ascii"}
    result = berth("config", "-a", "demo", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "GREETING=caf? ?\n", "")


def test_ps_shows_each_types_placement_then_one_row_per_process_sorted_by_type(berth, not_berth):
    result = berth("ps", "-a", "demo", env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[:3] == ["web: 2 replicas, placed on zone=a", "worker: 1 replica, on any node", ""]
    lines = lines[3:]
    assert lines[0].split() == ["PROCESS", "ID", "RELEASE", "STATE", "WHERE", "STARTED", "RESTARTS", "ERROR"]
    assert lines[2].split() == [
        "web", "a1b2c3d4e5f6", "v3", "starting", "(to", "running)", "127.0.0.1:30001", "-", "2", "task:",
        "non-zero", "exit", "(1)",
    ]  # fmt: skip
    assert lines[3].split() == [
        "worker",
        "k2x9w3bq0v7m",
        "v3",
        "running",
        "n0de",
        "2026-11-27",
        "10:00:01",
        "0",
        "-",
    ]


def test_ps_against_a_server_without_placement_shows_the_replicas_only(berth, not_berth):
    result = berth("ps", "-a", "old", env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "web: 2 replicas, on any node\n\nold has no processes running.\n",
        "",
    )


def test_ps_takes_the_placement_from_the_formation_when_the_server_gives_it_there(berth, not_berth):
    result = berth("ps", "-a", "next", env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == "web: 2 replicas, placed on zone=b"


def test_a_build_stream_that_ends_early_is_one_error_line_after_its_lines(berth, not_berth):
    result = berth("builds:output", "7", "-a", "demo", env={"BERTH_URL": not_berth, "BERTH_TOKEN": "x"})
    assert result.stdout == "one\ntwo\n"
    assert_one_error_line(result, contains="the output of build 7 ended while it was still building")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["rollback", "latest", "-a", "demo"], "'latest' is not a release version"),
        (["run", "-a", "demo"], "no command given"),
        (["run", "-a", "demo", "--"], "no command given"),
        (["deploy", "-a", "demo"], "--image"),
    ],
)
def test_new_commands_check_their_words_before_any_request(berth, words, message):
    assert_one_error_line(berth(*words), code=2, contains=message)


def test_help_puts_the_app_before_a_run_command():
    from berth.cli.main import help_text

    assert "run [--detach] [-a APP] -- CMD ..." in help_text()
