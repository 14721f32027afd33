from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "berth.builds"
    label = "builds"

    def ready(self) -> None:
        from berth.builds import services  # noqa: F401 - registers the builds sweeper
        from berth.builds.git import BuildOnPush, TokenGitAccess
        from berth.gitserver.seams import set_git_access, set_push_handler

        set_git_access(TokenGitAccess())
        set_push_handler(BuildOnPush())
