from django.urls import re_path

from berth.gitserver.views import git_http

# The app name is validated here, before anything reaches the filesystem: no dots, no slashes, no escapes.
urlpatterns = [
    re_path(
        r"^git/(?P<app>[a-z][a-z0-9-]{1,29})\.git/(?P<service>info/refs|git-upload-pack|git-receive-pack)\Z",
        git_http,
        name="git-http",
    ),
]
