"""The dashboard serves the one-file `berth` (berth.dashboard.clibundle) to anyone; it runs on its own."""

import subprocess
import sys
import zipfile


def test_the_one_file_cli_is_served_and_runs_without_the_server(client, settings, tmp_path):
    settings.BERTH_HOME = tmp_path / "home"
    answer = client.get("/cli/berth")  # no sign-in: a person needs it before they can log in
    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="berth"'
    body = b"".join(answer.streaming_content)
    assert body.startswith(b"#!/usr/bin/env python3\n")
    cli = tmp_path / "berth"
    cli.write_bytes(body)
    names = zipfile.ZipFile(cli).namelist()
    assert "__main__.py" in names and "berth/cli/main.py" in names and "httpx/__init__.py" in names
    assert not [
        name for name in names if name.startswith(("berth/api", "django/", "celery/")) or ".so" in name
    ]
    # a Python with none of the server's packages: -S leaves site-packages off the path, -I PYTHONPATH and user site
    listed = subprocess.run(
        [sys.executable, "-I", "-S", str(cli), "help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert "pipelines:promote" in listed.stdout and "login" in listed.stdout
    assert client.post("/cli/berth").status_code == 405
