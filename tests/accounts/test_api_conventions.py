"""The REST conventions every endpoint shares, checked through the accounts
endpoints: the error shape and its closed list of codes, throttling per user,
per API client and per IP on the credential endpoints, Django's own error
pages under /api/, and the OpenAPI schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from spotify_agent.api.exceptions import ERROR_CODES, handler404, handler500

from .conftest import API_CLIENTS_URL, ME_URL, TOKEN_URL, USERS_URL, api_key_client, bearer, error_of, login

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _rates(**rates: str):
    merged = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}
    return override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": merged})


# --- Error shape ---------------------------------------------------------------------


def test_unknown_api_url_is_a_json_404(api):
    response = api.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "not_found"


def test_unknown_admin_url_keeps_djangos_html_404(api):
    response = api.get("/admin-no-such-page/")

    assert response.status_code == 404
    assert "application/json" not in response["Content-Type"]


def test_wrong_method_is_405(user_client):
    response = user_client.delete(ME_URL)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_validation_error_is_400_with_fields(api):
    response = api.post(TOKEN_URL, {}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert set(error["details"]["fields"]) == {"username", "password"}


def test_malformed_json_is_400_bad_request(api):
    response = api.post(TOKEN_URL, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_missing_credentials_is_401(api):
    response = api.get(USERS_URL)

    assert response.status_code == 401
    assert error_of(response) == {
        "code": "unauthenticated",
        "message": "Authentication credentials were not provided.",
        "details": {},
    }


def test_django_500_is_json_under_api_and_html_elsewhere():
    factory = RequestFactory()

    api_response = handler500(factory.get("/api/v1/me/"))
    admin_response = handler500(factory.get("/admin/"))

    assert api_response.status_code == admin_response.status_code == 500
    assert api_response["Content-Type"] == "application/json"
    assert error_of(api_response) == {"code": "server_error", "message": "Internal server error.", "details": {}}
    assert "application/json" not in admin_response["Content-Type"]
    assert handler404(factory.get("/api/x"), None)["Content-Type"] == "application/json"


def test_docs_list_exactly_the_error_codes():
    table = DOCS.read_text().split("<!-- error-codes -->")[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))

    assert documented == set(ERROR_CODES)


# --- Throttling ----------------------------------------------------------------------------


def test_the_request_after_the_users_rate_is_429(user_client, api, tenant_admin):
    with _rates(user="3/min"):
        statuses = [user_client.get(ME_URL).status_code for _ in range(3)]
        throttled = user_client.get(ME_URL)
        # Another user has a bucket of their own.
        other = bearer(login(api, tenant_admin.username)["access"]).get(ME_URL)

    assert statuses == [200, 200, 200]
    assert throttled.status_code == 429
    error = error_of(throttled)
    assert error["code"] == "rate_limited"
    assert 0 < error["details"]["retry_after"] <= 60
    assert throttled["Retry-After"] == str(error["details"]["retry_after"])
    assert other.status_code == 200


def test_the_request_after_the_api_clients_rate_is_429(partner):
    client = api_key_client(partner[1])

    with _rates(api_client="2/min"):
        statuses = [client.get(USERS_URL).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_credential_endpoints_are_throttled_per_ip(api, user):
    with _rates(auth="2/min"):
        statuses = [
            api.post(TOKEN_URL, {"username": user.username, "password": "wrong"}, format="json").status_code
            for _ in range(3)
        ]
        throttled = api.post(TOKEN_URL, {"username": user.username, "password": "wrong"}, format="json")
        elsewhere = APIClient(REMOTE_ADDR="10.9.9.9").post(
            TOKEN_URL, {"username": user.username, "password": "wrong"}, format="json"
        )

    assert statuses == [401, 401, 429]
    assert error_of(throttled)["code"] == "rate_limited"
    assert elsewhere.status_code == 401


# --- OpenAPI ---------------------------------------------------------------------------------


def test_schema_serves_the_accounts_endpoints(api):
    response = api.get("/api/schema/")

    assert response.status_code == 200
    schema = response.content.decode()
    for path in (
        "/api/v1/auth/token/:",
        "/api/v1/auth/token/refresh/:",
        "/api/v1/auth/token/verify/:",
        "/api/v1/auth/ws-ticket/:",
        "/api/v1/me/:",
        "/api/v1/users/:",
        "/api/v1/users/{id}/:",
        f"{API_CLIENTS_URL}:",
        f"{API_CLIENTS_URL}{{id}}/:",
    ):
        assert path in schema


def test_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert "ErrorResponse" in (tmp_path / "schema.yml").read_text()
