"""Invitations, visibility, the listing and next-track recommendations at the
service level: who joins an invite-only session, who invites in each mode,
tenants, idempotency and the limit, what the listing shows and how it counts,
and suggestions that leave out what the session queued or played."""

from __future__ import annotations

import pytest

from accounts.principals import Principal
from listening.constants import MemberRole, SessionMode, SessionStatus, SessionVisibility
from listening.models import ListeningSession, SessionInvite
from listening.selectors import (
    session_recommendations,
    session_state,
    sessions_listed_page,
)
from listening.services import playback
from listening.services import sessions as session_services
from listening.services.sessions import (
    member_mute,
    member_remove,
    member_role_set,
    session_create,
    session_end,
    session_invite,
    session_join,
    session_leave,
    session_visibility_set,
)
from playlists.constants import SimilarityKind
from playlists.models import PlaylistItem, Track, TrackSimilarity
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound
from tests.factories import UserFactory
from tests.listening.test_sessions import command, enqueue

pytestmark = pytest.mark.django_db


def invite(actor, session, user_id):
    return session_invite(actor=actor, session_id=session.pk, user_id=user_id)


def api_client_of(tenant) -> Principal:
    """What API-key authentication puts in ``request.auth`` for a client with ``listening:read``."""
    return Principal(
        tenant_id=tenant.pk, tenant_slug=tenant.slug, api_client_id=1, scopes=frozenset({"listening:read"})
    )


def similar(tenant, track, *pairs) -> None:
    for other, score in pairs:
        TrackSimilarity.objects.create(
            tenant=tenant, track=track, similar=other, kind=SimilarityKind.CO_OCCURRENCE, score=score, together=2
        )


# --- Visibility ------------------------------------------------------------------------------


def test_visibility_is_chosen_at_creation_and_changed_by_the_host(people):
    assert session_create(actor=people.alice, title="Open").visibility == SessionVisibility.PUBLIC
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    assert session.visibility == SessionVisibility.INVITE
    for bad in ("secret", None, 1):
        with pytest.raises(Invalid) as caught:
            session_create(actor=people.alice, title="Bad", visibility=bad)
        assert "visibility" in caught.value.details["fields"]

    session_join(actor=people.alice, session_id=session.pk)
    invite(people.alice, session, people.bob.user_id)
    session_join(actor=people.bob, session_id=session.pk)
    with pytest.raises(Forbidden):
        session_visibility_set(actor=people.bob, session_id=session.pk, visibility="public")
    with pytest.raises(Invalid) as caught:
        session_visibility_set(actor=people.alice, session_id=session.pk, visibility="open")
    assert "visibility" in caught.value.details["fields"]
    with pytest.raises(NotFound):
        session_visibility_set(actor=people.dave, session_id=session.pk, visibility="public")
    assert session_visibility_set(actor=people.alice, session_id=session.pk, visibility="public").visibility == "public"
    assert session_visibility_set(actor=people.alice, session_id=session.pk, visibility="public").visibility == "public"
    assert session_state(actor=people.carol, session_id=session.pk)["visibility"] == "public"
    session_join(actor=people.carol, session_id=session.pk)  # open to the tenant now
    session_end(actor=people.alice, session_id=session.pk)
    with pytest.raises(Conflict):
        session_visibility_set(actor=people.alice, session_id=session.pk, visibility="invite")


def test_an_invite_only_session_admits_its_host_invitees_and_past_members(people):
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    with pytest.raises(Forbidden) as caught:
        session_join(actor=people.carol, session_id=session.pk)
    assert caught.value.message == "This session is by invitation only."
    with pytest.raises(Forbidden):
        session_state(actor=people.carol, session_id=session.pk)
    with pytest.raises(NotFound):
        session_join(actor=people.dave, session_id=session.pk)

    created = invite(people.alice, session, people.bob.user_id).invite
    assert created.accepted_at is None and created.invited_by_id == people.alice.user_id
    session_join(actor=people.bob, session_id=session.pk)
    accepted = SessionInvite.objects.get(pk=created.pk).accepted_at
    assert accepted is not None
    session_leave(actor=people.bob, session_id=session.pk)
    session_join(actor=people.bob, session_id=session.pk)
    assert SessionInvite.objects.get(pk=created.pk).accepted_at == accepted  # the first join counts

    # A member of a public session who left comes back after it turns invite-only.
    public = session_create(actor=people.alice, title="Was open")
    session_join(actor=people.carol, session_id=public.pk)
    session_leave(actor=people.carol, session_id=public.pk)
    session_visibility_set(actor=people.alice, session_id=public.pk, visibility="invite")
    assert session_join(actor=people.carol, session_id=public.pk).role == MemberRole.LISTENER
    # The host leaving hands off; the session stays by invitation only.
    session_leave(actor=people.alice, session_id=session.pk)
    with pytest.raises(Forbidden):
        session_join(actor=people.carol, session_id=session.pk)
    session_join(actor=people.alice, session_id=session.pk)  # a past member (the former host)


def test_removed_members_stay_out_invited_or_not(people):
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    invite(people.alice, session, people.bob.user_id)
    session_join(actor=people.bob, session_id=session.pk)
    member_remove(actor=people.alice, session_id=session.pk, user_id=people.bob.user_id)
    with pytest.raises(Forbidden) as caught:
        session_join(actor=people.bob, session_id=session.pk)
    assert caught.value.message == "The host removed you from this session."
    with pytest.raises(Forbidden):
        session_state(actor=people.bob, session_id=session.pk)
    with pytest.raises(Conflict):
        invite(people.alice, session, people.bob.user_id)
    assert sessions_listed_page(actor=people.bob) == []
    # Nor is a public session they were removed from listed to them.
    public = session_create(actor=people.alice, title="Open")
    session_join(actor=people.bob, session_id=public.pk)
    member_remove(actor=people.alice, session_id=public.pk, user_id=people.bob.user_id)
    assert sessions_listed_page(actor=people.bob) == []
    assert [row["id"] for row in sessions_listed_page(actor=people.carol)] == [public.pk]


# --- Invitations -----------------------------------------------------------------------------


def test_the_host_and_co_djs_invite_to_a_dj_session_and_any_member_in_group_mode(people, tenant):
    erin = UserFactory(username="erin", tenant=tenant).pk
    dj = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ, visibility="invite")
    with pytest.raises(Forbidden):
        invite(people.carol, dj, erin)  # not in the session
    invite(people.alice, dj, people.bob.user_id)
    session_join(actor=people.bob, session_id=dj.pk)
    with pytest.raises(Forbidden):
        invite(people.bob, dj, erin)  # a listener
    member_role_set(actor=people.alice, session_id=dj.pk, user_id=people.bob.user_id, role=MemberRole.CO_DJ)
    assert invite(people.bob, dj, erin).invite.invited_by_id == people.bob.user_id

    group = session_create(actor=people.alice, title="Group", visibility="invite")
    invite(people.alice, group, people.bob.user_id)
    session_join(actor=people.bob, session_id=group.pk)
    invite(people.bob, group, people.carol.user_id)  # any member
    session_join(actor=people.carol, session_id=group.pk)
    member_mute(actor=people.alice, session_id=group.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        invite(people.carol, group, erin)  # muted
    session_leave(actor=people.bob, session_id=group.pk)
    with pytest.raises(Forbidden):
        invite(people.bob, group, erin)  # left
    session_end(actor=people.alice, session_id=group.pk)
    with pytest.raises(Conflict):
        invite(people.alice, group, erin)
    with pytest.raises(NotFound):
        invite(people.dave, group, erin)


def test_only_active_users_of_the_tenant_are_invited_and_others_look_alike(people, tenant):
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    inactive = UserFactory(username="gone", tenant=tenant, is_active=False).pk
    missing = max(inactive, people.dave.user_id) + 1000
    messages = set()
    for user_id in (people.dave.user_id, missing, inactive):
        with pytest.raises(NotFound) as caught:
            invite(people.alice, session, user_id)
        messages.add(caught.value.message)
    assert messages == {"No such user in this tenant."}
    for bad in ("bob", None, True, people.alice.user_id):
        with pytest.raises(Invalid) as caught:
            invite(people.alice, session, bad)
        assert "user" in caught.value.details["fields"]
    assert not SessionInvite.objects.exists()


def test_invitations_are_idempotent_announced_once_and_limited(
    people, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    with django_capture_on_commit_callbacks() as announced:
        first = invite(people.alice, session, people.bob.user_id)
    assert first.created and len(announced) == 1  # session.invited, to bob's sockets
    with django_capture_on_commit_callbacks() as announced:
        again = invite(people.alice, session, people.bob.user_id)
    assert not again.created and again.invite.pk == first.invite.pk and announced == []
    assert SessionInvite.objects.filter(session=session).count() == 1

    monkeypatch.setattr(session_services, "SESSION_INVITES_MAX", 2)
    invite(people.alice, session, people.carol.user_id)
    with pytest.raises(Conflict) as caught:
        invite(people.alice, session, UserFactory(username="erin", tenant=tenant).pk)
    assert caught.value.details == {"max_invites": 2}
    assert not invite(people.alice, session, people.carol.user_id).created  # a repeat is no new one


# --- Listing ---------------------------------------------------------------------------------


def test_the_listing_shows_what_the_caller_may_join_the_largest_audience_first(
    people, tenant, other_tenant, tracks, django_assert_num_queries
):
    big = session_create(actor=people.alice, title="Big", mode=SessionMode.DJ)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=big.pk)
    enqueue(people.alice, big, tracks[0])
    command(people.alice, big, "play")
    small = session_create(actor=people.carol, title="Small")
    closed = session_create(actor=people.alice, title="Closed", visibility="invite")
    invite(people.alice, closed, people.bob.user_id)
    secret = session_create(actor=people.alice, title="Secret", visibility="invite")
    ended = session_create(actor=people.carol, title="Over")
    session_end(actor=people.carol, session_id=ended.pk)
    foreign = session_create(actor=people.dave, title="Elsewhere")

    def listed(actor):
        return [row["id"] for row in sessions_listed_page(actor=actor)]

    # Ties on audience: the newest first.
    assert listed(people.alice) == [big.pk, secret.pk, closed.pk, small.pk]
    assert listed(people.bob) == [big.pk, closed.pk, small.pk]
    assert listed(people.carol) == [big.pk, small.pk]
    assert listed(people.dave) == [foreign.pk]
    assert listed(api_client_of(tenant)) == [big.pk, secret.pk, closed.pk, small.pk]
    assert listed(api_client_of(other_tenant)) == [foreign.pk]

    with django_assert_num_queries(1):
        rows = sessions_listed_page(actor=people.bob)
    assert rows[0] == {
        "id": big.pk,
        "title": "Big",
        "mode": "dj",
        "visibility": "public",
        "host": {"id": people.alice.user_id, "username": "alice"},
        "audience": 3,
        "track": {
            "id": tracks[0].pk,
            "uri": tracks[0].uri,
            "title": tracks[0].title,
            "artist": "Band",
            "album": "",
            "duration_ms": tracks[0].duration_ms,
        },
        "playing": True,
        "created_at": big.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert [row["audience"] for row in rows] == [3, 1, 1]
    assert rows[1]["track"] is None and rows[1]["visibility"] == "invite"

    # Leaving counts at once.
    session_leave(actor=people.bob, session_id=big.pk)
    session_leave(actor=people.carol, session_id=big.pk)
    session_join(actor=people.bob, session_id=small.pk)
    assert listed(people.carol) == [small.pk, big.pk]
    assert [row["id"] for row in sessions_listed_page(actor=people.alice, limit=1)] == [small.pk]
    with pytest.raises(Invalid) as caught:
        sessions_listed_page(actor=people.alice, limit="all")
    assert "limit" in caught.value.details["fields"]


# --- Recommendations -------------------------------------------------------------------------


@pytest.fixture
def catalog(tenant):
    return [
        Track.objects.create(tenant=tenant, uri=f"test:r:{n}", title=f"Pick {n}", artist="Band", duration_ms=60_000)
        for n in range(6)
    ]


def recommended(actor, session, **extra) -> list[int]:
    return [pick["track"]["id"] for pick in session_recommendations(actor=actor, session_id=session.pk, **extra)]


def test_recommendations_leave_out_what_is_queued_playing_or_played(people, tenant, other_tenant, catalog):
    t = catalog
    similar(tenant, t[0], (t[1], 0.9), (t[2], 0.8), (t[3], 0.7), (t[4], 0.6))
    similar(tenant, t[1], (t[0], 0.9), (t[5], 0.1))
    foreign = Track.objects.create(tenant=other_tenant, uri="test:x", title="X", artist="Y", duration_ms=1000)
    similar(other_tenant, t[0], (foreign, 5.0))  # another tenant's model says nothing here
    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    enqueue(people.alice, session, t[0], t[1])
    command(people.alice, session, "play")  # t0 plays, t1 queued

    picks = session_recommendations(actor=people.bob, session_id=session.pk)
    assert [pick["track"]["id"] for pick in picks] == [t[2].pk, t[3].pk, t[4].pk, t[5].pk]
    assert set(picks[0]) == {"track", "score", "reason", "because_track", "kind"}
    assert picks[0]["because_track"] == t[0].pk and picks[0]["reason"] == "often with Pick 0 by Band"

    command(people.alice, session, "skip")  # t0 played, t1 plays, nothing queued
    enqueue(people.alice, session, t[2])
    assert recommended(people.bob, session) == [t[3].pk, t[4].pk, t[5].pk]
    assert recommended(people.bob, session, limit=1) == [t[3].pk]
    assert recommended(api_client_of(tenant), session) == [t[3].pk, t[4].pk, t[5].pk]

    with pytest.raises(Invalid) as caught:
        recommended(people.bob, session, limit="five")
    assert "limit" in caught.value.details["fields"]
    with pytest.raises(Forbidden):
        recommended(people.carol, session)  # not present
    for outsider in (people.dave, api_client_of(other_tenant)):
        with pytest.raises(NotFound):
            recommended(outsider, session)
    session_end(actor=people.alice, session_id=session.pk)
    with pytest.raises(Conflict):
        recommended(api_client_of(tenant), session)


def test_radio_appends_the_recommendations(people, tenant, catalog):
    """Radio mode and the members' suggestions are one function: what a member is
    shown before the queue runs dry is what the radio appends."""
    t = catalog
    similar(tenant, t[0], (t[1], 0.9), (t[2], 0.8), (t[3], 0.7), (t[4], 0.6), (t[5], 0.5))
    similar(tenant, t[1], (t[0], 0.9))
    session = session_create(actor=people.alice, title="Radio", mode=SessionMode.DJ)
    enqueue(people.alice, session, t[0], t[1])
    command(people.alice, session, "play")
    command(people.alice, session, "skip")  # t0 was played, t1 plays, the queue is empty
    playback.session_radio_set(actor=people.alice, session_id=session.pk, on=True)
    shown = recommended(people.alice, session, limit=5)
    assert shown == [t[2].pk, t[3].pk, t[4].pk, t[5].pk]  # never t0, played earlier
    skipped = command(people.alice, session, "skip")
    session.refresh_from_db()
    remaining = list(PlaylistItem.objects.filter(playlist_id=session.queue_id).order_by("position"))
    assert [skipped["track"]["id"], *[item.track_id for item in remaining]] == shown
    assert session.status == SessionStatus.LIVE
    assert ListeningSession.objects.get(pk=session.pk).track_id == t[2].pk
