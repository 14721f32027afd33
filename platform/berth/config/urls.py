from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from berth.observe.views import healthz
from berth.operations.views import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("berth.api.urls")),
    path("", include("berth.gitserver.urls")),
    path("", include("berth.dashboard.urls")),
]


def handler404(request, exception=None):
    """API clients get JSON with a `detail` even for a path no route matches; people get the 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "not found"}, status=404)
    return page_not_found(request, exception)
