"""Buildpack chaining: app.json's node-then-static builds with Node.js and serves the build's output (no Docker)."""

import json
import shutil
import tarfile

import pytest
from berth.builds.builder import build_context
from berth.builds.buildpacks import detect, plan_for, render_dockerfile
from berth.builds.errors import BuildError

from tests.conftest import FIXTURE_APPS


@pytest.fixture
def vite_app(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(FIXTURE_APPS / "node-vite-spa", app)
    return app


def test_node_then_static_is_one_buildpack_building_on_node_and_running_on_static(vite_app):
    buildpack = detect(vite_app)
    assert buildpack.name == "node+static"
    assert [b.name for b in buildpack.chain] == ["node", "static"]
    assert buildpack.default_web_command == "berth-static"
    plan = plan_for(buildpack, vite_app)
    assert (plan.stack, plan.run_stack) == ("node", "static")
    assert plan.values["node_manager"] == "npm" and plan.values["node_version"] == '"22.x"'


def test_the_chained_dockerfile_runs_the_node_build_then_serves_only_its_output(vite_app):
    buildpack = detect(vite_app)
    dockerfile = render_dockerfile(
        buildpack, vite_app, stack_image="berth/stack:node", run_image="berth/stack:static"
    )
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms == [
        "FROM berth/stack:node AS cache",
        "FROM berth/stack:node AS fresh",
        "FROM berth/stack:node AS runtime",  # the Node.js image's start, unused when chained
        "FROM runtime AS run",
        "FROM fresh AS deps",
        "FROM berth/stack:static",
    ]
    build_stage, run_stage = dockerfile.split("FROM berth/stack:static")
    # the output is chosen after the build script ran, in the build stage
    assert build_stage.index("RUN berth-node build") < build_stage.index("RUN berth-static-output")
    assert "COPY --from=deps --chown=app:app /berth-static/ /app/" in run_stage
    assert "/opt/node" not in run_stage and "node_modules" not in run_stage
    assert run_stage.rstrip().endswith('CMD ["/bin/sh", "-c", "exec berth-static"]')


def test_the_build_context_holds_both_buildpacks_helpers_and_no_node_modules(vite_app):
    (vite_app / "node_modules" / "left").mkdir(parents=True)
    (vite_app / "node_modules" / "left" / "index.js").write_text("")
    buildpack = detect(vite_app)
    with build_context(
        source_dir=vite_app, buildpack=buildpack, dockerfile="FROM x", ca_bundle=None
    ) as context:
        names = tarfile.open(fileobj=context).getnames()
    assert {"berth/files/berth-node", "berth/files/berth-static-output", "berth/files/berth-static"} <= set(
        names
    )
    assert "app/package-lock.json" in names
    assert not any(name.startswith("app/node_modules") for name in names)


@pytest.mark.parametrize(
    "chain, message",
    [
        (["heroku-community/static", "heroku/nodejs"], "app.json: buildpacks: node cannot follow static"),
        (["heroku/go", "heroku-community/static"], "app.json: buildpacks: static cannot follow go"),
        (["heroku/nodejs", "dockerfile"], "app.json: buildpacks: dockerfile cannot follow node"),
    ],
)
def test_a_chain_berth_cannot_build_is_refused_in_one_line_naming_what_it_can(tmp_path, chain, message):
    (tmp_path / "app.json").write_text(json.dumps({"buildpacks": [{"url": url} for url in chain]}))
    (tmp_path / "package.json").write_text("{}")
    with pytest.raises(BuildError) as error:
        detect(tmp_path)
    assert str(error.value) == f"{message}; Berth chains node then static"
