"""/api/v1/auth/: tokens (simplejwt-compatible) and WebSocket tickets."""

from django.urls import path

from . import views

urlpatterns = [
    path("token/", views.TokenObtainView.as_view(), name="token-obtain"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("token/verify/", views.TokenVerifyView.as_view(), name="token-verify"),
    path("ws-ticket/", views.WsTicketIssueView.as_view(), name="ws-ticket"),
]
