from django.apps import AppConfig


class GitserverTestsConfig(AppConfig):
    """Installs the fake seams in every process that loads tests.gitserver.settings (servers, git hooks)."""

    name = "tests.gitserver"
    label = "gitserver_tests"

    def ready(self):
        from tests.gitserver.fakes import install

        install()
