"""The push handler the git server installs (berth.gitserver.seams): the deploy branch builds and deploys as before
(berth.builds.git.BuildOnPush); another branch makes, updates or deletes its preview app when the app has previews
on, else is only stored."""

import os
from collections.abc import Callable
from pathlib import Path

from django.contrib.auth import get_user_model

from berth.apps.models import App
from berth.builds.git import BuildOnPush
from berth.previews.services import preview_delete, preview_push


class BuildOnPushWithPreviews(BuildOnPush):
    def on_branch(
        self,
        *,
        app_name: str,
        ref: str,
        old: str,
        new: str,
        repo_path: Path,
        write_line: Callable[[str], None],
        pusher: str = "",
        deletes: bool = False,
    ) -> bool | None:
        """A push of a branch that does not deploy: None when the app has no previews (the branch is only
        stored), else whether the push is accepted."""
        app = App.objects.select_related("team").filter(name=app_name).first()
        if app is None or not app.previews:
            return None
        branch = ref.removeprefix("refs/heads/")
        actor = get_user_model().objects.filter(username=pusher or os.environ.get("REMOTE_USER", "")).first()
        if deletes:
            preview_delete(parent=app, branch=branch, actor=actor, write_line=write_line)
            return True
        return preview_push(
            parent=app, branch=branch, sha=new, repo=repo_path, actor=actor, write_line=write_line
        )
