"""The JWT endpoints: obtain, refresh rotation and reuse, verify, and the tokens
the API must refuse (expired, forged, revoked, for a disabled account)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.constants import TenantStatus
from accounts.services.tokens import TenantRefreshToken
from audit.constants import AuditAction
from audit.models import AuditEvent
from tests.factories import UserFactory

from .conftest import ME_URL, REFRESH_URL, TOKEN_URL, VERIFY_URL, bearer, error_of, login

pytestmark = pytest.mark.django_db


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _claims(token: str) -> dict:
    return json.loads(_unb64(token.split(".")[1]))


def _me_error(access: str) -> dict:
    response = bearer(access).get(ME_URL)
    assert response.status_code == 401, response.content
    return error_of(response)


# --- Obtain ------------------------------------------------------------------------


def test_obtain_returns_a_pair_carrying_tenant_audience_and_issuer(api, user, tenant):
    pair = login(api, user.username)

    assert set(pair) == {"access", "refresh"}
    header = json.loads(_unb64(pair["access"].split(".")[0]))
    assert header["alg"] == "HS256"
    claims = _claims(pair["access"])
    assert claims["user_id"] == str(user.pk)
    assert claims["tenant_id"] == tenant.pk
    assert claims["aud"] == jwt_settings.AUDIENCE
    assert claims["iss"] == jwt_settings.ISSUER
    assert claims["token_type"] == "access"
    # exp counts from the refresh token's clock, iat from the access token's:
    # both are whole seconds, so a second boundary between them shows as one.
    lifetime = int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds())
    assert lifetime - 1 <= claims["exp"] - claims["iat"] <= lifetime
    assert bearer(pair["access"]).get(ME_URL).status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_SUCCEEDED, actor_id=user.pk).count() == 1


def test_obtain_with_a_wrong_password_is_401_invalid_credentials(api, user):
    response = api.post(TOKEN_URL, {"username": user.username, "password": "nope"}, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_obtain_for_a_disabled_account_is_indistinguishable_from_a_wrong_password(api, user):
    user.is_active = False
    user.save(update_fields=["is_active"])

    response = api.post(TOKEN_URL, {"username": user.username, "password": "nope"}, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"


def test_staff_without_membership_cannot_get_api_tokens(api):
    staff = UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True)

    response = api.post(TOKEN_URL, {"username": staff.username, "password": "correct-horse-battery-staple"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "no_membership"
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert event.details["reason"] == "no_membership"
    assert not OutstandingToken.objects.exists()


def test_obtain_for_a_suspended_tenant_is_401_tenant_inactive(api, user, tenant):
    tenant.status = TenantStatus.SUSPENDED
    tenant.save(update_fields=["status"])

    response = api.post(TOKEN_URL, {"username": user.username, "password": "correct-horse-battery-staple"})

    assert response.status_code == 401
    assert error_of(response)["code"] == "tenant_inactive"


# --- Refresh -------------------------------------------------------------------------


def test_refresh_rotates_and_blacklists_the_old_token(api, user):
    first = login(api, user.username)

    response = api.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json")

    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert _claims(second["refresh"])["jti"] != _claims(first["refresh"])["jti"]
    assert BlacklistedToken.objects.filter(token__jti=_claims(first["refresh"])["jti"]).exists()
    assert not BlacklistedToken.objects.filter(token__jti=_claims(second["refresh"])["jti"]).exists()
    assert _claims(second["access"])["tenant_id"] == user.membership.tenant_id
    assert bearer(second["access"]).get(ME_URL).status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REFRESHED).count() == 1


def test_reusing_a_rotated_refresh_token_revokes_every_session(api, user):
    first = login(api, user.username)
    second = api.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json").json()
    other_session = login(api, user.username)

    replay = api.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json")

    assert replay.status_code == 401
    assert error_of(replay)["code"] == "token_reused"
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REUSE_DETECTED)
    assert event.target_id == str(user.pk)
    assert event.tenant_id == user.membership.tenant_id
    # The legitimate newer refresh token and every other session die with it...
    for refresh in (second["refresh"], other_session["refresh"]):
        response = api.post(REFRESH_URL, {"refresh": refresh}, format="json")
        assert response.status_code == 401
        assert error_of(response)["code"] in {"token_reused", "token_revoked"}
    # ...and so do the access tokens issued before the reuse.
    for access in (first["access"], second["access"], other_session["access"]):
        assert _me_error(access)["code"] == "token_revoked"


def test_refresh_refuses_an_access_token_and_garbage(api, user):
    pair = login(api, user.username)

    for value in (pair["access"], "not-a-token"):
        response = api.post(REFRESH_URL, {"refresh": value}, format="json")
        assert response.status_code == 401
        assert error_of(response)["code"] == "token_invalid"


def test_refresh_ignores_a_stale_bearer_header(api, user):
    pair = login(api, user.username)
    client = bearer("expired.or.garbage")

    response = client.post(REFRESH_URL, {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 200


# --- Refused access tokens -----------------------------------------------------------


def test_expired_access_token_is_401_token_expired(user):
    access = TenantRefreshToken.for_user(user).access_token
    access.set_exp(from_time=timezone.now() - timedelta(hours=1))

    assert _me_error(str(access))["code"] == "token_expired"


def test_alg_none_token_is_refused(api, user):
    claims = _claims(login(api, user.username)["access"])
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    forged = f"{header}.{_b64(json.dumps(claims).encode())}."

    assert _me_error(forged)["code"] == "token_invalid"


def test_token_signed_with_another_key_is_refused(api, user):
    claims = _claims(login(api, user.username)["access"])
    forged = jwt.encode(claims, "another-key-that-is-long-enough-for-hs256-0123456789", algorithm="HS256")

    assert _me_error(forged)["code"] == "token_invalid"


def test_token_with_another_algorithm_is_refused_even_with_the_right_key(api, user):
    claims = _claims(login(api, user.username)["access"])
    forged = jwt.encode(claims, jwt_settings.SIGNING_KEY, algorithm="HS512")

    assert _me_error(forged)["code"] == "token_invalid"


@pytest.mark.parametrize(("claim", "value"), [("aud", "someone-else"), ("iss", "someone-else")])
def test_token_for_another_audience_or_issuer_is_refused(api, user, claim, value):
    claims = _claims(login(api, user.username)["access"])
    claims[claim] = value
    forged = jwt.encode(claims, jwt_settings.SIGNING_KEY, algorithm="HS256")

    assert _me_error(forged)["code"] == "token_invalid"


def test_tampered_payload_is_refused(api, user, other_user):
    header, payload, signature = login(api, user.username)["access"].split(".")
    claims = json.loads(_unb64(payload))
    claims["user_id"] = str(other_user.pk)
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    assert _me_error(forged)["code"] == "token_invalid"


def test_refresh_token_is_not_an_access_token(api, user):
    refresh = login(api, user.username)["refresh"]

    assert _me_error(refresh)["code"] == "token_invalid"


def test_deactivated_users_token_stops_working_at_once(api, user):
    client = bearer(login(api, user.username)["access"])
    assert client.get(ME_URL).status_code == 200

    user.is_active = False
    user.save(update_fields=["is_active"])

    response = client.get(ME_URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "user_inactive"


def test_suspended_tenants_token_stops_working_at_once(api, user, tenant):
    client = bearer(login(api, user.username)["access"])
    tenant.status = TenantStatus.SUSPENDED
    tenant.save(update_fields=["status"])

    response = client.get(ME_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "tenant_inactive"


def test_malformed_authorization_header_is_401(user):
    client = bearer("a b")

    response = client.get(ME_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"


# --- Verify ------------------------------------------------------------------------------


def test_verify_accepts_live_tokens_and_refuses_rotated_or_expired_ones(api, user):
    first = login(api, user.username)
    for token in (first["access"], first["refresh"]):
        response = api.post(VERIFY_URL, {"token": token}, format="json")
        assert response.status_code == 200
        assert response.json() == {}

    api.post(REFRESH_URL, {"refresh": first["refresh"]}, format="json")
    rotated = api.post(VERIFY_URL, {"token": first["refresh"]}, format="json")
    assert rotated.status_code == 401
    assert error_of(rotated)["code"] == "token_revoked"
    # Verifying a rotated token is not a reuse: nothing was revoked.
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_REUSE_DETECTED).exists()

    access = TenantRefreshToken.for_user(user).access_token
    access.set_exp(from_time=timezone.now() - timedelta(hours=1))
    expired = api.post(VERIFY_URL, {"token": str(access)}, format="json")
    assert expired.status_code == 401
    assert error_of(expired)["code"] == "token_expired"


def test_verify_refuses_a_disabled_accounts_token(api, user):
    pair = login(api, user.username)
    user.is_active = False
    user.save(update_fields=["is_active"])

    for token in (pair["access"], pair["refresh"]):
        response = api.post(VERIFY_URL, {"token": token}, format="json")
        assert response.status_code == 401
        assert error_of(response)["code"] == "user_inactive"
