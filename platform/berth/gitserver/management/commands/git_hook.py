"""`manage.py git_hook pre-receive`: a pre-receive hook that decides the push in its own Django process.

Berth's git server no longer installs it (its hook relays to the web process: berth.gitserver.relay, one Django
process per push in progress was ~100 MB each); it stays for a repository served by plain `git receive-pack`.

git runs it with the repository as working directory and the web process's environment (through
`git http-backend` and `git receive-pack`). Whatever it writes to stderr reaches the pusher as `remote:` lines,
so lines are flushed one by one to arrive live.
"""

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from berth.builds.repos import is_valid_app_name, is_valid_branch
from berth.gitserver.services import parse_ref_updates, push_receive


def write_line(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")
    sys.stderr.flush()


class Command(BaseCommand):
    help = "Git hook entry point (pre-receive) for Berth's app repositories."
    # Every push waits for this process to start: skip the system checks (they import every URLconf and view).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("hook", choices=["pre-receive"])

    def handle(self, *args, **options):
        repo = Path(os.environ.get("GIT_DIR", ".")).resolve()
        # The app is the repository's own name, not something the environment could claim.
        app_name = repo.name.removesuffix(".git")
        deploy_branch = os.environ.get("BERTH_GIT_DEPLOY_BRANCH") or "main"
        if not is_valid_app_name(app_name) or not is_valid_branch(deploy_branch):
            raise CommandError(f"not a Berth app repository: {repo}")
        updates = parse_ref_updates(sys.stdin)
        accepted = push_receive(
            app_name=app_name,
            deploy_branch=deploy_branch,
            repo=repo,
            updates=updates,
            write_line=write_line,
            pusher=os.environ.get("REMOTE_USER", ""),
        )
        if not accepted:
            sys.exit(1)
