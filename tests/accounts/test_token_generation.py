"""Revoking every session is exact: tokens and tickets issued before it are
refused, tokens issued after it work, even within the same second."""

import pytest

from accounts.services.tokens import (
    AuthenticationError,
    TenantRefreshToken,
    access_token_authenticate,
    token_refresh,
    user_revoke_sessions,
    ws_ticket_consume,
    ws_ticket_issue,
)

pytestmark = pytest.mark.django_db


def test_tokens_issued_before_a_revocation_are_refused_and_new_ones_work(user):
    old_refresh = TenantRefreshToken.for_user(user)
    old_access = str(old_refresh.access_token)

    user_revoke_sessions(user=user)
    new_access = str(TenantRefreshToken.for_user(user).access_token)

    with pytest.raises(AuthenticationError) as refused:
        access_token_authenticate(raw_token=old_access)
    assert refused.value.code == "token_revoked"
    with pytest.raises(AuthenticationError) as refused:
        token_refresh(raw_refresh=str(old_refresh))
    # Revoked with every session, not rotated: no theft alarm that would also
    # revoke the sessions opened since.
    assert refused.value.code == "token_revoked"
    # Same second as the revocation: a timestamp cut-off could not tell these apart.
    assert access_token_authenticate(raw_token=new_access)[0] == user


def test_a_ticket_minted_before_a_revocation_opens_nothing(user):
    _user, principal = access_token_authenticate(raw_token=str(TenantRefreshToken.for_user(user).access_token))
    ticket = ws_ticket_issue(principal=principal).ticket

    user_revoke_sessions(user=user)

    with pytest.raises(AuthenticationError) as refused:
        ws_ticket_consume(ticket=ticket)
    assert refused.value.code == "token_revoked"


def test_a_ticket_of_a_user_moved_to_another_tenant_is_refused(user, other_tenant):
    _user, principal = access_token_authenticate(raw_token=str(TenantRefreshToken.for_user(user).access_token))
    ticket = ws_ticket_issue(principal=principal).ticket

    user.membership.tenant = other_tenant
    user.membership.save()

    with pytest.raises(AuthenticationError) as refused:
        ws_ticket_consume(ticket=ticket)
    assert refused.value.code == "ticket_invalid"
