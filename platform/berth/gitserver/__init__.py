"""Git over smart HTTP for apps: `/git/<app>.git/...` served by `git http-backend` from an async view.

views.py authorizes through the GitAccess seam (seams.py: Berth's API tokens and roles) and streams the CGI child
(backend.py). The repositories are the repository store's (berth.builds.repos: one bare repository per app under
BERTH_HOME/repos); services.py makes each servable, with a pre-receive hook that is a small bash relay: the push
is decided in the web process that runs git for it (relay.py, over a socket git inherits), which serializes pushes
per app and calls the GitPushHandler seam for the deploy branch (berth.builds.git.BuildOnPush: build, then deploy).
Settings: BERTH_GIT_MAX_PUSH_BYTES, BERTH_GIT_PUSH_WAIT (conf.py).
"""
