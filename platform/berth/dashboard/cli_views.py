"""The one-file `berth` command for teammates' laptops (berth.dashboard.clibundle), served to anyone: it is the
open-source client, holds no secret, and a person needs it before they can log in."""

import functools
from pathlib import Path

from django.http import FileResponse, HttpRequest
from django.views.decorators.http import require_GET

from berth.dashboard.clibundle import cli_bundle


@functools.cache
def _bundle() -> Path:
    # made (or found up to date) once per process: the files it holds change only with a new version of Berth
    return cli_bundle()


@require_GET
def cli_download(request: HttpRequest) -> FileResponse:
    return FileResponse(
        open(_bundle(), "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename="berth",
        content_type="application/octet-stream",
    )
