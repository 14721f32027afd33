"""The buildpacks' plans: the Python or Node version and the package manager a tree asks for (no Docker)."""

import json
import re
from pathlib import Path

import pytest
from berth.builds.buildpacks import get_buildpack, plan_for, render_dockerfile
from berth.builds.detection import python_manager, python_version
from berth.builds.errors import BuildError


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"requirements.txt": ""}, ("3.11", "default")),
        ({"requirements.txt": "", ".python-version": "3.13\n"}, ("3.13", ".python-version")),
        ({"requirements.txt": "", ".python-version": "# pinned\n3.13.2\n"}, ("3.13", ".python-version")),
        ({"requirements.txt": "", "runtime.txt": "python-3.13.1\n"}, ("3.13", "runtime.txt")),
        ({"Pipfile": '[requires]\npython_version = "3.13"\n'}, ("3.13", "Pipfile")),
        (
            {"pyproject.toml": '[project]\nname="a"\nrequires-python = ">=3.12"\n'},
            ("3.13", "requires-python"),
        ),
        (
            {"pyproject.toml": '[project]\nname="a"\nrequires-python = ">=3.10,<4"\n'},
            ("3.11", "requires-python"),
        ),
        (
            {"pyproject.toml": '[project]\nname="a"\nrequires-python = "==3.13.*"\n'},
            ("3.13", "requires-python"),
        ),
        (
            {"pyproject.toml": '[project]\nname="a"\nrequires-python = "~=3.11"\n'},
            ("3.11", "requires-python"),
        ),
        # .python-version wins over the others, as on Heroku
        ({".python-version": "3.11", "runtime.txt": "python-3.13.0"}, ("3.11", ".python-version")),
    ],
)
def test_the_python_version_is_read_where_heroku_reads_it(tmp_path, files, expected):
    assert python_version(_tree(tmp_path, files)) == expected


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {".python-version": "3.12\n"},
            "Python 3.12 (from .python-version) is not available; available: 3.11",
        ),
        ({"runtime.txt": "python-3.9.18"}, "Python 3.9 (from runtime.txt) is not available; available: 3.11"),
        ({"runtime.txt": "ruby-3.3"}, "runtime.txt says 'ruby-3.3'; it should read like python-3.13.1"),
        ({".python-version": "latest"}, "not a version like 3.13"),
        (
            {"pyproject.toml": '[project]\nrequires-python = ">=3.14"\n'},
            "no available Python meets requires-python",
        ),
        ({"pyproject.toml": "[project\n"}, "pyproject.toml is not valid TOML"),
    ],
)
def test_an_unavailable_or_unreadable_version_is_one_line_listing_what_is_available(tmp_path, files, message):
    with pytest.raises(BuildError) as error:
        python_version(_tree(tmp_path, files))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "files, manager",
    [
        (["pyproject.toml", "uv.lock", "requirements.txt"], "uv"),
        (["pyproject.toml", "poetry.lock"], "poetry"),
        (["Pipfile", "Pipfile.lock", "requirements.txt"], "pipenv"),
        (["requirements.txt"], "pip"),
        (["pyproject.toml"], "pip"),
    ],
)
def test_the_package_manager_is_chosen_by_lockfile_in_herokus_order(tmp_path, files, manager):
    assert python_manager(_tree(tmp_path, dict.fromkeys(files, ""))) == manager


def test_a_pipfile_without_its_lock_says_to_lock_it(tmp_path):
    with pytest.raises(BuildError, match=r"Pipfile has no Pipfile.lock: run `pipenv lock`"):
        python_manager(_tree(tmp_path, {"Pipfile": ""}))


def test_a_broken_pipfile_lock_is_refused_before_the_build(tmp_path):
    tree = _tree(tmp_path, {"Pipfile": "", "Pipfile.lock": "{not json"})
    with pytest.raises(BuildError, match="Pipfile.lock is not valid JSON"):
        plan_for(get_buildpack("python"), tree)


def test_python_313_builds_and_runs_on_the_trixie_stack(tmp_path):
    plan = plan_for(
        get_buildpack("python"), _tree(tmp_path, {"requirements.txt": "", ".python-version": "3.13"})
    )
    assert (plan.stack, plan.run_stack) == ("trixie", "trixie")
    assert plan.steps == ("-----> Installing Python 3.13 (from .python-version)",)


def test_the_template_gets_the_manager_and_collectstatic_switch_from_the_plan(tmp_path):
    tree = _tree(tmp_path, {"pyproject.toml": "", "uv.lock": ""})
    buildpack = get_buildpack("python")
    dockerfile = render_dockerfile(
        buildpack, tree, stack_image="s", plan=plan_for(buildpack, tree, {"DISABLE_COLLECTSTATIC": "1"})
    )
    assert "ENV BERTH_PYTHON_MANAGER=uv" in dockerfile
    assert "RUN DISABLE_COLLECTSTATIC=1 berth-python compile" in dockerfile
    # the tool and the dependencies install before the app's code is copied: a code change reuses both layers
    assert dockerfile.index("berth-python install") < dockerfile.index("COPY --chown=app:app app/ /app/")
    # config vars never become image ENV
    assert "ENV DISABLE_COLLECTSTATIC" not in dockerfile


# --- node -------------------------------------------------------------------------------------------------------


def _node(tmp_path: Path, package: dict, *lockfiles: str, yarn_lock: str = "") -> dict[str, str]:
    files = {"package.json": json.dumps(package), **dict.fromkeys(lockfiles, "")}
    if yarn_lock:
        files["yarn.lock"] = yarn_lock
    return plan_for(get_buildpack("node"), _tree(tmp_path, files)).values


@pytest.mark.parametrize(
    "package, lockfiles, yarn_lock, manager",
    [
        ({}, ["package-lock.json"], "", "npm"),
        ({}, [], "", "npm"),
        ({}, ["pnpm-lock.yaml"], "", "pnpm"),
        ({}, [], "# yarn lockfile v1\n", "yarn"),
        ({}, [], "__metadata:\n  version: 8\n", "yarn-berry"),
        # packageManager wins over the lockfile
        ({"packageManager": "yarn@4.5.3"}, ["package-lock.json"], "", "yarn-berry"),
        ({"packageManager": "yarn@1.22.22"}, [], "", "yarn"),
        ({"packageManager": "pnpm@9.8.0+sha512.abc"}, [], "", "pnpm"),
    ],
)
def test_the_node_package_manager_comes_from_package_manager_else_the_lockfile(
    tmp_path, package, lockfiles, yarn_lock, manager
):
    assert _node(tmp_path, package, *lockfiles, yarn_lock=yarn_lock)["node_manager"] == manager


def test_engines_node_is_passed_as_a_quoted_range_and_nothing_else(tmp_path):
    assert _node(tmp_path, {"engines": {"node": ">=20 <23"}})["node_version"] == '">=20 <23"'
    (tmp_path / "none").mkdir()
    assert _node(tmp_path / "none", {})["node_version"] == '""'


@pytest.mark.parametrize(
    "package, message",
    [
        ({"engines": {"node": "22; rm -rf /"}}, "engines.node '22; rm -rf /' is not a version range"),
        ({"packageManager": "bun@1.1.0"}, "packageManager 'bun@1.1.0' is not npm@…, pnpm@… or yarn@…"),
    ],
)
def test_a_node_manifest_berth_cannot_use_is_one_line(tmp_path, package, message):
    with pytest.raises(BuildError, match=re.escape(message)):
        _node(tmp_path, package)


def test_a_broken_package_json_is_named(tmp_path):
    (tmp_path / "package.json").write_text("{,}")
    with pytest.raises(BuildError, match="package.json is not valid JSON"):
        plan_for(get_buildpack("node"), tmp_path)


# --- go ---------------------------------------------------------------------------------------------------------


def test_a_go_line_within_the_stacks_go_builds_and_vendored_modules_build_offline(tmp_path):
    tree = _tree(tmp_path, {"go.mod": "module a\n\ngo 1.18 // old enough\n"})
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "modules.txt").write_text("# example.com/x v1.0.0\n")
    plan = plan_for(get_buildpack("go"), tree)
    assert (plan.stack, plan.run_stack) == ("go", "base")
    assert plan.values["go_vendored"] == "1"
    assert "-----> Building with the vendored modules (vendor/), offline" in plan.steps


def test_a_go_line_newer_than_the_stacks_go_is_refused_in_one_line(tmp_path):
    tree = _tree(tmp_path, {"go.mod": "module a\n\ngo 1.23.1\n"})
    with pytest.raises(
        BuildError, match=r"^go.mod asks for Go 1.23; the go stack has Go 1.19 \(Debian bookworm\)"
    ):
        plan_for(get_buildpack("go"), tree)
