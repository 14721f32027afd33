"""The CLI and git over HTTPS: real TLS in front of the live server, a certificate from a test CA, and the CA
bundle (`berth login --ca-bundle`, BERTH_CA_BUNDLE) that the CLI and git remotes verify it with."""

import json
import os
import subprocess

import pytest

from tests.cli.conftest import PASSWORD, as_json, assert_one_error_line, ok
from tests.support.tls import TestCA, TlsTerminator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def test_ca(tmp_path):
    return TestCA(tmp_path / "ca")


@pytest.fixture
def https_server(test_ca, live_server):
    """The live server behind real TLS at https://127.0.0.1:<port>, with a certificate the test CA signed."""
    terminator = TlsTerminator(test_ca.issue("127.0.0.1", "localhost"), live_server.url.rsplit(":", 1)[1])
    yield terminator
    terminator.stop()


def login(berth, url: str, *extra: str, **kwargs):
    return berth("login", url, "--username", "ada", "--password", PASSWORD, *extra, **kwargs)


def stored(home) -> dict:
    return json.loads((home / ".config/berth/credentials.json").read_text())


def test_login_over_https_with_a_ca_bundle_keeps_it_for_later_commands(
    berth, home, https_server, test_ca, ada
):
    out = ok(login(berth, https_server.url, "--ca-bundle", str(test_ca.root_path)))
    assert out.startswith(f"Logged in to {https_server.url} as ada")
    assert f"checked against {test_ca.root_path}" in out
    assert stored(home)["url"] == https_server.url
    assert stored(home)["ca_bundle"] == str(test_ca.root_path)
    # later commands verify with the stored bundle, without being told again
    assert ok(berth("whoami")) == "ada\n"
    assert as_json(berth("teams:create", "acme", "--json"))["name"] == "acme"


def test_a_certificate_no_trusted_ca_signed_is_refused_and_nothing_is_stored(berth, home, https_server, ada):
    line = assert_one_error_line(login(berth, https_server.url), contains="cannot verify the TLS certificate")
    assert "--ca-bundle" in line and "BERTH_CA_BUNDLE" in line
    assert not (home / ".config/berth/credentials.json").exists()
    assert https_server.handshakes_failed >= 1  # the client hung up in the handshake: no password was sent


def test_a_bundle_of_another_ca_does_not_verify_the_server(berth, home, https_server, tmp_path, ada):
    other = TestCA(tmp_path / "other-ca", name="Someone else's CA")
    result = login(berth, https_server.url, "--ca-bundle", str(other.root_path))
    assert_one_error_line(result, contains="cannot verify the TLS certificate")
    assert not (home / ".config/berth/credentials.json").exists()


def test_berth_ca_bundle_from_the_environment(berth, home, https_server, test_ca, ada):
    env = {"BERTH_CA_BUNDLE": str(test_ca.root_path)}
    ok(login(berth, https_server.url, env=env))
    assert ok(berth("whoami", env=env)) == "ada\n"
    # CI style: URL, token and bundle all from the environment, with no stored login at all
    token = stored(home)["token"]
    (home / ".config/berth/credentials.json").unlink()
    ci = env | {"BERTH_URL": https_server.url, "BERTH_TOKEN": token}
    assert ok(berth("whoami", env=ci)) == "ada\n"
    assert_one_error_line(
        berth("whoami", env={"BERTH_URL": https_server.url, "BERTH_TOKEN": token}),
        contains="cannot verify the TLS certificate",
    )


def test_an_unreadable_ca_bundle_is_one_error_line_before_the_password_is_asked(
    berth, home, https_server, ada
):
    result = berth("login", https_server.url, "--ca-bundle", str(home / "missing.pem"), stdin="ada\n")
    assert_one_error_line(result, contains=f"cannot use the CA bundle {home / 'missing.pem'}")
    (home / "junk.pem").write_text("not a certificate\n")
    result = login(berth, https_server.url, "--ca-bundle", str(home / "junk.pem"))
    assert_one_error_line(result, contains="cannot use the CA bundle")


def test_the_stored_bundle_is_not_trusted_for_another_server_named_by_berth_url(
    berth, home, https_server, test_ca, tmp_path, live_server, ada
):
    ok(login(berth, https_server.url, "--ca-bundle", str(test_ca.root_path)))
    other = TlsTerminator(test_ca.issue("127.0.0.1", stem="other"), live_server.url.rsplit(":", 1)[1])
    try:
        env = {"BERTH_URL": other.url}  # signed by the same CA, but not the server the bundle was given for
        assert_one_error_line(berth("whoami", env=env), contains="cannot verify the TLS certificate")
    finally:
        other.stop()


def test_login_url_as_a_word_or_with_url_but_not_two_different_ones(berth, https_server, live_server, ada):
    result = berth(
        "login", https_server.url, "--url", live_server.url, "--username", "ada", "--password", "x"
    )
    assert_one_error_line(result, code=2, contains="two different server URLs")
    ok(berth("login", "--url", live_server.url, "--username", "ada", "--password", PASSWORD))


def git_env(home) -> dict:
    """git as a user whose HOME is `home` (the CLI's), no system config, never a prompt."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def git(repo, *args, home):
    return subprocess.run(
        ["git", *args], cwd=repo, env=git_env(home), capture_output=True, text=True, timeout=60
    )


def test_git_remote_is_https_and_git_verifies_with_the_same_bundle(berth, home, https_server, test_ca, ada):
    ok(login(berth, https_server.url, "--ca-bundle", str(test_ca.root_path)))
    ok(berth("teams:create", "acme"))
    ok(berth("apps:create", "shop"))
    repo = home / "shop"
    repo.mkdir()
    assert git(repo, "init", "-q", home=home).returncode == 0
    answer = as_json(berth("git:remote", "-a", "shop", "--json", cwd=repo))
    assert answer["url"] == f"{https_server.url}/git/shop.git"
    assert git(repo, "remote", "get-url", "berth", home=home).stdout.strip() == answer["url"]
    setting = f"http.{https_server.url}/.sslCAInfo"
    assert git(repo, "config", setting, home=home).stdout.strip() == str(test_ca.root_path)

    # git talks TLS to the server, trusting the test CA for this URL only, and gets the token from the CLI
    listed = git(repo, "ls-remote", "berth", home=home)
    assert listed.returncode == 0, listed.stderr
    # the same without the bundle: git refuses the certificate, so the check is really git's
    git(repo, "config", "--unset", setting, home=home)
    refused = git(repo, "ls-remote", "berth", home=home)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr.lower() or "SSL" in refused.stderr, refused.stderr


def test_git_remote_without_a_bundle_removes_one_left_by_an_earlier_login(
    berth, home, https_server, test_ca, ada
):
    ok(login(berth, https_server.url, "--ca-bundle", str(test_ca.root_path)))
    ok(berth("teams:create", "acme"))
    ok(berth("apps:create", "shop"))
    repo = home / "shop"
    repo.mkdir()
    git(repo, "init", "-q", home=home)
    ok(berth("git:remote", "-a", "shop", cwd=repo))
    setting = f"http.{https_server.url}/.sslCAInfo"
    assert git(repo, "config", setting, home=home).returncode == 0
    # the server's certificate now comes from a public CA (played by SSL_CERT_FILE, the system's trust store as
    # httpx reads it) and the login keeps no bundle: git must not keep trusting the private CA for this server
    credentials = {k: v for k, v in stored(home).items() if k != "ca_bundle"}
    (home / ".config/berth/credentials.json").write_text(json.dumps(credentials))
    ok(berth("git:remote", "-a", "shop", cwd=repo, env={"SSL_CERT_FILE": str(test_ca.root_path)}))
    assert git(repo, "config", setting, home=home).returncode == 1  # unset


def test_the_git_credential_helper_never_gives_an_https_token_to_plain_http(
    berth, home, https_server, test_ca, ada
):
    ok(login(berth, https_server.url, "--ca-bundle", str(test_ca.root_path)))
    host = https_server.url.removeprefix("https://")
    answer = ok(berth("git:credentials", "get", stdin=f"protocol=https\nhost={host}\n\n"))
    assert answer.startswith("username=berth\npassword=berth_")
    assert ok(berth("git:credentials", "get", stdin=f"protocol=http\nhost={host}\n\n")) == ""
