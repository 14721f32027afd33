"""static.json, Heroku's static buildpack file: berth-static-config checks it at build time (a bad file is one line
and a failed build) and writes nginx settings; the built site serves its routes, redirects, headers, clean URLs and
error page (real build, real nginx in the container)."""

import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
import httpx
import pytest
from berth.builds.builder import docker_build
from berth.builds.buildpacks import detect
from berth.builds.errors import BuildError
from berth.runtime.build import image_untag
from berth.runtime.client import docker_client

from tests.conftest import FIXTURE_APPS, REPO_DIR, free_port

CONFIG_SCRIPT = REPO_DIR / "buildpacks" / "static" / "files" / "berth-static-config"
LABELS = {"org.berth.test": "1", "org.berth.test.suite": "static-json"}
STATIC_JSON = {
    "root": "public",
    "clean_urls": True,
    "https_only": True,
    "routes": {"/app/**": "index.html"},
    "redirects": {"/old": {"url": "/about", "status": 301}},
    "error_page": "404.html",
    "headers": {
        "/**": {"X-Frame-Options": "DENY", "Cache-Control": "no-cache"},
        "/assets/**": {
            "Cache-Control": "public, max-age=31536000, immutable",
            "Content-Security-Policy": "default-src 'self'; img-src *",
        },
    },
}


@pytest.fixture
def site(tmp_path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "static", app)
    public = app / "public"
    (public / "about.html").write_text("<h1>about us</h1>")
    (public / "404.html").write_text("<h1>no such page here</h1>")
    (public / "assets").mkdir()
    (public / "assets" / "app.js").write_text("console.log('app')")
    (app / "static.json").write_text(json.dumps(STATIC_JSON))
    return app


def _configure(app: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CONFIG_SCRIPT), "--app", str(app), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_settings_are_written_from_static_json(site, tmp_path):
    result = _configure(site, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    server = (tmp_path / "out" / "server.conf").read_text()
    assert f'root "{site / "public"}";' in server
    assert 'location ~ "^/app/.*$" { try_files $uri $uri.html $uri/ /index.html; }' in server
    assert 'location = "/old" { return 301 "/about"; }' in server
    assert "error_page 404 /404.html;" in server
    assert "https://$host$request_uri" in server
    http = (tmp_path / "out" / "http.conf").read_text()
    # the last pattern that matches wins: /assets/** is tried before /**
    cache = next(line for line in http.splitlines() if "max-age" in line)
    assert cache.index('"~^/assets/.*$"') < cache.index('"~^/.*$"')
    assert result.stdout.splitlines()[0] == "-----> Reading static.json"


def test_without_static_json_the_public_folder_is_served_as_before(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "static", app)
    result = _configure(app, tmp_path / "out")
    assert result.returncode == 0 and result.stdout == ""
    server = (tmp_path / "out" / "server.conf").read_text()
    assert f'root "{app / "public"}";' in server and "location / { try_files $uri $uri/ =404; }" in server


@pytest.mark.parametrize(
    "config, message",
    [
        ("{not json", "static.json is not JSON"),
        ([], "static.json must hold an object ({...})"),
        ({"proxies": {}}, "static.json: proxies is not supported by Berth"),
        ({"rootz": "x"}, "static.json: unknown key 'rootz'"),
        ({"root": "../elsewhere"}, "static.json: root ../elsewhere leads outside the app"),
        ({"root": "nowhere"}, "static.json: root nowhere is not a folder of the app"),
        (
            {"routes": {"/**": "missing.html"}},
            "static.json: routes /**: missing.html is not a file of the site",
        ),
        ({"routes": {"app/**": "index.html"}}, "static.json: routes app/**: 'app/**' is not a path pattern"),
        (
            {"redirects": {"/a": {"url": "/b", "status": 418}}},
            "static.json: redirects /a: status must be one of",
        ),
        ({"redirects": {"/a": {"url": "/$host"}}}, "static.json: redirects /a: the url must have no spaces"),
        (
            {"headers": {"/**": {"X-A": "a$b"}}},
            "static.json: headers /**: X-A's value must have no double quotes",
        ),
        ({"headers": {"/**": {"X A": "b"}}}, "static.json: headers /**: 'X A' is not a header name"),
        ({"clean_urls": "yes"}, "static.json: clean_urls must be true or false"),
        ({"error_page": "nope.html"}, "static.json: error_page: nope.html is not a file of the site"),
    ],
)
def test_a_bad_static_json_is_one_line_and_writes_nothing(tmp_path, config, message):
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "static", app)
    (tmp_path / "elsewhere").mkdir()  # a folder beside the app: a root leading there is refused
    (app / "static.json").write_text(config if isinstance(config, str) else json.dumps(config))
    result = _configure(app, tmp_path / "out")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "-----> Reading static.json" and len(lines) == 2, result.stdout
    assert lines[1].strip().startswith(message), lines[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_the_built_site_serves_routes_redirects_headers_clean_urls_and_its_error_page(site):
    tag = f"berth/t-static-{secrets.token_hex(3)}:latest"
    client = docker_client()
    container = None
    try:
        docker_build(
            source_dir=site,
            tag=tag,
            buildpack=detect(site),
            on_line=lambda line: None,
            ca_bundle=None,
            timeout=240,
            labels=LABELS,
        )
        port = free_port()
        container = client.containers.run(
            tag,
            detach=True,
            environment={"PORT": "5000"},
            ports={"5000/tcp": ("127.0.0.1", port)},
            labels=LABELS,
        )
        base = f"http://127.0.0.1:{port}"
        https = {"X-Forwarded-Proto": "https"}
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/", headers=https, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(container.logs().decode(errors="replace")) from None
                time.sleep(0.3)

        def get(path: str, headers: dict | None = None) -> httpx.Response:
            return httpx.get(base + path, headers=headers or https, timeout=5, follow_redirects=False)

        index = (site / "public" / "index.html").read_text()
        assert get("/").text == index
        assert get("/about").text == "<h1>about us</h1>"  # clean URLs
        assert get("/app/settings/profile").text == index  # a client-side route of the SPA
        missing = get("/nothing/here")
        assert (missing.status_code, missing.text) == (404, "<h1>no such page here</h1>")
        moved = get("/old")
        assert (moved.status_code, moved.headers["location"].endswith("/about")) == (301, True)
        plain = get(
            "/about", {"X-Forwarded-Proto": "http"}
        )  # https_only: the router said the request was http
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        asset = get("/assets/app.js")
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-security-policy"] == "default-src 'self'; img-src *"
        assert asset.headers["x-frame-options"] == "DENY"
        page = get("/")
        assert page.headers["cache-control"] == "no-cache" and "content-security-policy" not in page.headers
        assert missing.headers["x-frame-options"] == "DENY"  # on error pages too
    finally:
        if container is not None:
            container.remove(force=True)
        image_untag(tag)


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_a_bad_static_json_fails_the_build_in_one_line(site):
    (site / "static.json").write_text(json.dumps({"routes": {"/**": "spa.html"}}))
    tag = f"berth/t-static-{secrets.token_hex(3)}:latest"
    shown: list[str] = []
    try:
        with pytest.raises(BuildError):
            docker_build(
                source_dir=site,
                tag=tag,
                buildpack=detect(site),
                on_line=shown.append,
                ca_bundle=None,
                timeout=240,
                labels=LABELS,
            )
        assert "       static.json: routes /**: spa.html is not a file of the site" in shown, shown
    finally:
        try:
            image_untag(tag)
        except docker.errors.APIError:
            pass
