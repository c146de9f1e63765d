"""/api/v1/: the caller, the tenant's members and its API clients."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("users", views.UserViewSet, basename="user")
router.register("api-clients", views.ApiClientViewSet, basename="api-client")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]
