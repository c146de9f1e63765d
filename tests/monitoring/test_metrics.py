"""/metrics: Prometheus text, open without METRICS_TOKEN, bearer-guarded with it."""

from __future__ import annotations

from django.test import override_settings

TOKEN = "metrics-token-for-tests-0123456789"


def test_metrics_are_open_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    client.get("/healthz")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "django_http_requests_total_by_method_total" in response.content.decode()


@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics_require_the_bearer_token_when_configured(client):
    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    other_scheme = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    right = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    for refused in (missing, wrong, other_scheme):
        assert refused.status_code == 401
        assert refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert "django_http" not in refused.content.decode()
    assert right.status_code == 200
    assert "django_http_requests_total_by_method_total" in right.content.decode()
