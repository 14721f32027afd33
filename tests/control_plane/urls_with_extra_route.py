"""The real URLconf plus one API route that has no permission rule: the guard test must notice it."""

from berth.config.urls import urlpatterns as real_urlpatterns
from django.urls import path
from rest_framework.views import APIView


class ForgottenView(APIView):
    def get(self, request):  # pragma: no cover - never called, only discovered
        raise AssertionError


urlpatterns = [*real_urlpatterns, path("api/v1/forgotten", ForgottenView.as_view(), name="api-forgotten")]
