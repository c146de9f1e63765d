"""URL map. REST lives under /api/v1/, each app contributing its ``api/urls.py``."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("auth/", include("accounts.api.urls_auth")),
    path("", include("accounts.api.urls")),
    path("", include("chat.api.urls")),
    path("", include("playlists.api.urls")),
    path("", include("listening.api.urls")),
    path("", include("notifications.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("monitoring.urls")),
]

# Django's own errors: the API error shape under /api/, Django's pages elsewhere.
handler400 = "spotify_agent.api.exceptions.handler400"
handler403 = "spotify_agent.api.exceptions.handler403"
handler404 = "spotify_agent.api.exceptions.handler404"
handler500 = "spotify_agent.api.exceptions.handler500"
