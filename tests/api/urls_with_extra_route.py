"""The real URLconf plus one API route that has no permission rule: the guard test must notice it, and the
permission class must refuse it (fail closed)."""

from berth.api.common import BerthAPIView
from berth.config.urls import urlpatterns as real_urlpatterns
from django.urls import path


class ForgottenView(BerthAPIView):
    def get(self, request):  # pragma: no cover - the permission class refuses it first
        raise AssertionError


urlpatterns = [*real_urlpatterns, path("api/v1/forgotten", ForgottenView.as_view(), name="api-forgotten")]
