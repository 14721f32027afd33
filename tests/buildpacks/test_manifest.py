"""app.json, Heroku's app manifest: read, checked with one-line errors, and its buildpack chosen (no Docker)."""

import json

import pytest
from berth.builds.buildpacks import detect
from berth.builds.errors import BuildError
from berth.builds.manifest import manifest_read


def _app(tmp_path, manifest, **files):
    (tmp_path / "app.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_fields_berth_uses_are_read(tmp_path):
    manifest = manifest_read(
        _app(
            tmp_path,
            {
                "name": "shop",
                "description": "fields Berth does not use are left alone",
                "scripts": {"postdeploy": " python manage.py migrate "},
                "formation": {"web": {"quantity": 2, "size": "standard-1x"}, "worker": {"quantity": 1}},
                "buildpacks": [{"url": "heroku/python"}],
                "healthchecks": {"web": {"path": "/healthz", "timeout": 3}},
                "env": {"SECRET_KEY": {"generator": "secret"}},
            },
        )
    )
    assert manifest.postdeploy == "python manage.py migrate"
    assert manifest.formation == {
        "web": {"quantity": 2, "size": "standard-1x"},
        "worker": {"quantity": 1, "size": ""},
    }
    assert manifest.buildpacks == ("python",)
    # the older one-object form reads as one startup check with Dokku's defaults
    assert manifest.healthchecks == {
        "web": [
            {
                "type": "startup",
                "path": "/healthz",
                "attempts": 5,
                "timeout": 3,
                "wait": 5,
                "initialDelay": 0,
                "name": "",
                "content": "",
            }
        ]
    }


def test_healthchecks_are_read_in_dokkus_form(tmp_path):
    checks = [
        {"type": "startup", "name": "db", "path": "/ready", "attempts": 3, "timeout": 2, "content": "ok"},
        {"path": "/", "wait": 1, "initialDelay": 2},
    ]
    manifest = manifest_read(_app(tmp_path, {"healthchecks": {"web": checks}}))
    first, second = manifest.healthchecks["web"]
    assert first == {
        "type": "startup",
        "name": "db",
        "path": "/ready",
        "attempts": 3,
        "timeout": 2,
        "wait": 5,
        "initialDelay": 0,
        "content": "ok",
    }
    assert (second["path"], second["wait"], second["initialDelay"], second["attempts"]) == ("/", 1, 2, 5)


def test_no_app_json_is_no_manifest(tmp_path):
    assert manifest_read(tmp_path) is None


def test_app_json_names_the_buildpack_over_detection_and_the_app_setting_over_both(tmp_path):
    tree = _app(
        tmp_path, {"buildpacks": [{"url": "heroku/nodejs"}]}, **{"requirements.txt": "", "package.json": "{}"}
    )
    assert detect(tree).name == "node"
    assert detect(tree, "python").name == "python"


@pytest.mark.parametrize(
    "manifest, message",
    [
        ("{", "app.json: not valid JSON"),
        ([], "app.json: must be a JSON object"),
        (
            {"scripts": {"postdeploy": ["migrate"]}},
            "app.json: scripts.postdeploy must be a command line (a string)",
        ),
        (
            {"formation": {"web": {"quantity": -1}}},
            "app.json: formation.web.quantity must be a whole number from 0 to 100",
        ),
        ({"formation": {"Web Server": {}}}, "app.json: formation key 'Web Server' is not a process type"),
        (
            {"buildpacks": [{"url": "heroku/ruby"}]},
            "app.json: buildpacks[0].url 'heroku/ruby' is not one Berth has",
        ),
        (
            {"buildpacks": [{"url": "heroku/nodejs"}, {"url": "heroku/python"}]},
            "app.json: buildpacks: python cannot follow node; Berth chains node then static",
        ),
        (
            {"buildpacks": [{"url": "heroku/nodejs"}, {"url": "heroku/nodejs"}, {"url": "static"}]},
            "app.json: buildpacks lists 3; Berth chains at most 2",
        ),
        (
            {"healthchecks": {"web": {"path": "healthz"}}},
            "app.json: healthchecks.web.path must be a path starting with /",
        ),
        (
            {"healthchecks": {"web": {"path": "/", "timeout": 0}}},
            "app.json: healthchecks.web.timeout must be a number of seconds from 1 to 300",
        ),
        (
            {"healthchecks": {"web": [{"type": "liveness", "path": "/"}]}},
            "app.json: healthchecks.web[0].type 'liveness' is not one Berth runs; it runs startup checks",
        ),
        (
            {"healthchecks": {"web": [{"path": "/"}, {"path": "/ready", "attempts": 0}]}},
            "app.json: healthchecks.web[1].attempts must be a number of tries from 1 to 100",
        ),
        (
            {"healthchecks": {"web": [{"path": "/", "command": ["curl", "localhost"]}]}},
            "app.json: healthchecks.web[0].command is not a check field Berth runs",
        ),
        ({"healthchecks": {"web": []}}, "app.json: healthchecks.web must be a list of 1 to 10 checks"),
        (
            {"healthchecks": {"worker": [{"path": "/"}]}},
            "app.json: healthchecks.worker: Berth checks web only",
        ),
    ],
)
def test_an_app_json_berth_cannot_use_is_one_line_naming_the_field(tmp_path, manifest, message):
    tree = _app(tmp_path, manifest, **{"requirements.txt": ""})
    with pytest.raises(BuildError) as error:
        detect(tree)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
