"""/api/v1/me/ and /api/v1/auth/ws-ticket/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.constants import ApiScope
from accounts.services.tokens import ws_ticket_consume
from audit.constants import AuditAction
from audit.models import AuditEvent

from .conftest import ME_URL, WS_TICKET_URL, api_key_client, error_of

pytestmark = pytest.mark.django_db


def test_me_for_a_user(user_client, user, tenant):
    response = user_client.get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "role": "member",
        "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name, "tier": tenant.tier},
    }


def test_me_for_an_api_client(partner, tenant):
    client_row, key = partner

    response = api_key_client(key).get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "api_client": {"id": client_row.pk, "name": "partner", "scopes": [ApiScope.TENANT_READ]},
        "tenant": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name, "tier": tenant.tier},
    }


def test_me_accepts_the_x_api_key_header(partner):
    from rest_framework.test import APIClient

    response = APIClient().get(ME_URL, HTTP_X_API_KEY=partner[1])

    assert response.status_code == 200


def test_me_without_credentials_is_401(api, db):
    response = api.get(ME_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
    assert "WWW-Authenticate" in response.headers


def test_user_gets_a_single_use_ws_ticket(user_client, user):
    before = timezone.now()

    response = user_client.post(WS_TICKET_URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ticket", "expires_at"}
    expires_at = parse_datetime(body["expires_at"])
    assert before < expires_at <= timezone.now() + timedelta(seconds=settings.WS_TICKET_TTL)
    redeemed_user, principal = ws_ticket_consume(ticket=body["ticket"])
    assert redeemed_user.pk == user.pk
    assert principal.tenant_id == user.membership.tenant_id
    assert AuditEvent.objects.filter(action=AuditAction.WS_TICKET_ISSUED, actor_id=user.pk).count() == 1


def test_api_client_cannot_get_a_ws_ticket(partner):
    response = api_key_client(partner[1]).post(WS_TICKET_URL)

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_ws_ticket_needs_authentication(api, db):
    response = api.post(WS_TICKET_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
