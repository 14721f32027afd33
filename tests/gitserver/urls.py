from berth.config.urls import urlpatterns as project_urlpatterns
from berth.gitserver.urls import urlpatterns as git_urlpatterns

urlpatterns = [*git_urlpatterns, *project_urlpatterns]
