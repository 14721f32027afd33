from django.urls import re_path

from berth.gitserver.source_views import source_webhook
from berth.gitserver.views import git_http

# The app name is validated here, before anything reaches the filesystem: no dots, no slashes, no escapes.
urlpatterns = [
    re_path(
        r"^git/(?P<app>[a-z][a-z0-9-]{1,29})\.git/(?P<service>info/refs|git-upload-pack|git-receive-pack)\Z",
        git_http,
        name="git-http",
    ),
    re_path(r"^hooks/git/(?P<app>[a-z][a-z0-9-]{1,29})\Z", source_webhook, name="source-webhook"),
]
