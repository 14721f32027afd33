"""Settings for processes the git tests start (gunicorn, and the git hooks): the project's, plus the git server.

tests.gitserver's AppConfig comes last, so its fake seams replace whatever the project installed in ready().
"""

from berth.config.settings import *  # noqa: F403
from berth.config.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    *([] if "berth.gitserver" in INSTALLED_APPS else ["berth.gitserver"]),
    "tests.gitserver.apps.GitserverTestsConfig",
]
ROOT_URLCONF = "tests.gitserver.urls"
