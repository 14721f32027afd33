from django.core.management.base import BaseCommand

from berth.operations.exposition import metrics_token


class Command(BaseCommand):
    help = "Print the bearer token GET /metrics asks for (BERTH_METRICS_TOKEN, else one generated into BERTH_HOME)."

    def handle(self, *args, **options):
        self.stdout.write(metrics_token())
