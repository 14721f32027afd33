"""Git over smart HTTP for apps: `/git/<app>.git/...` served by `git http-backend` from an async view.

views.py authorizes through the GitAccess seam (seams.py) and streams the CGI child (backend.py); services.py
keeps one bare repository per app under BERTH_HOME/repos with a pre-receive hook that runs
`manage.py git_hook pre-receive`, which serializes pushes per app and calls the GitPushHandler seam for the
deploy branch. Settings: BERTH_GIT_MAX_PUSH_BYTES, BERTH_GIT_PUSH_WAIT (conf.py).
"""
