"""The chat REST endpoints, once each: status, shape, tenant isolation and error mapping."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services.tokens import token_pair_issue
from chat.constants import RoomKind
from chat.models import Message, RoomBan, RoomMember
from chat.services.messages import message_send
from chat.services.rooms import room_create, room_join
from tests.accounts.conftest import error_of
from tests.chat.conftest import as_principal

pytestmark = pytest.mark.django_db

ROOMS = "/api/v1/rooms/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


@pytest.fixture
def alice(user):
    return client_for(user)


@pytest.fixture
def bob_api(bob):
    return client_for(bob)


def test_create_list_and_retrieve_rooms(alice, bob_api, alice_p):
    created = alice.post(ROOMS, {"name": "general", "topic": "all things"}, format="json")
    assert created.status_code == 201, created.content
    room = created.json()
    assert {k: room[k] for k in ("name", "kind", "topic", "last_seq", "encrypted")} == {
        "name": "general",
        "kind": "public",
        "topic": "all things",
        "last_seq": 0,
        "encrypted": False,
    }
    message_send(actor=alice_p, room_id=room["id"], client_id="c", body="hi")

    listed = alice.get(ROOMS).json()
    assert [(r["room"]["name"], r["role"], r["unread"]) for r in listed["results"]] == [("general", "owner", 0)]
    # A public room not joined yet is visible, without a membership.
    detail = bob_api.get(f"{ROOMS}{room['id']}/").json()
    assert detail["room"]["id"] == room["id"] and detail["membership"] is None

    duplicate = alice.post(ROOMS, {"name": "general"}, format="json")
    assert duplicate.status_code == 409
    assert error_of(duplicate)["code"] == "conflict"


def test_join_members_leave(alice, bob_api, alice_p, bob):
    room = room_create(actor=alice_p, name="general")
    message_send(actor=alice_p, room_id=room.pk, client_id="c", body="hi")

    joined = bob_api.post(f"{ROOMS}{room.pk}/join/")
    assert joined.status_code == 200
    assert (joined.json()["role"], joined.json()["unread"]) == ("member", 1)
    members = bob_api.get(f"{ROOMS}{room.pk}/members/").json()["results"]
    assert sorted(m["user"]["username"] for m in members) == ["alice", "bob"]
    assert bob_api.post(f"{ROOMS}{room.pk}/leave/").status_code == 204
    assert not RoomMember.objects.filter(room=room, user=bob).exists()


def test_private_room_invite_and_not_found_for_outsiders(alice, bob_api, alice_p, bob):
    room = room_create(actor=alice_p, name="secret", kind=RoomKind.PRIVATE)

    hidden = bob_api.get(f"{ROOMS}{room.pk}/")
    assert hidden.status_code == 404 and error_of(hidden)["code"] == "not_found"
    invited = alice.post(f"{ROOMS}{room.pk}/invite/", {"user_id": bob.pk}, format="json")
    assert invited.status_code == 201
    assert invited.json()["invitee_id"] == bob.pk
    assert bob_api.post(f"{ROOMS}{room.pk}/join/").status_code == 200


def test_another_tenants_room_answers_404_everywhere(alice_p, other_user):
    room = room_create(actor=alice_p, name="general")
    message_send(actor=alice_p, room_id=room.pk, client_id="c", body="hi")
    dave = client_for(other_user)

    for method, path, body in [
        ("get", f"{ROOMS}{room.pk}/", None),
        ("post", f"{ROOMS}{room.pk}/join/", None),
        ("get", f"{ROOMS}{room.pk}/messages/", None),
        ("post", f"{ROOMS}{room.pk}/messages/", {"client_id": "x", "body": "hi"}),
        ("patch", f"{ROOMS}{room.pk}/messages/1/", {"body": "x"}),
        ("delete", f"{ROOMS}{room.pk}/messages/1/", None),
        ("post", f"{ROOMS}{room.pk}/read/", {"seq": 1}),
    ]:
        response = getattr(dave, method)(path, body, format="json")
        assert response.status_code == 404, (method, path, response.content)
        assert error_of(response) == {"code": "not_found", "message": "No such room.", "details": {}}


def test_send_is_201_then_200_on_resend_and_lists_newest_first(alice, alice_p):
    room = room_create(actor=alice_p, name="general")
    url = f"{ROOMS}{room.pk}/messages/"

    first = alice.post(url, {"client_id": "c1", "body": "<b>hi</b>"}, format="json")
    again = alice.post(url, {"client_id": "c1", "body": "<b>hi</b>"}, format="json")
    alice.post(url, {"client_id": "c2", "body": "second", "reply_to_seq": 1}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert set(first.json()) == {
        "id",
        "seq",
        "sender",
        "body",
        "reply_to_seq",
        "created_at",
        "edited_at",
        "deleted",
        "attachments",
    }
    assert first.json()["body"] == "<b>hi</b>"
    page = alice.get(url, {"page_size": 1}).json()
    assert [m["seq"] for m in page["results"]] == [2] and page["results"][0]["reply_to_seq"] == 1
    older = alice.get(page["next"]).json()
    assert [m["seq"] for m in older["results"]] == [1]


def test_send_errors_map_to_the_error_shape(alice, bob_api, alice_p):
    room = room_create(actor=alice_p, name="general")
    url = f"{ROOMS}{room.pk}/messages/"

    empty = alice.post(url, {"client_id": "c1", "body": "  "}, format="json")
    assert empty.status_code == 400
    assert error_of(empty)["details"] == {"fields": {"body": ["The message is empty."]}}
    not_joined = bob_api.post(url, {"client_id": "c1", "body": "hi"}, format="json")
    assert not_joined.status_code == 403 and error_of(not_joined)["code"] == "forbidden"
    missing_field = alice.post(url, {"body": "hi"}, format="json")
    assert missing_field.status_code == 400 and "client_id" in error_of(missing_field)["details"]["fields"]


def test_edit_and_delete(alice, bob_api, alice_p, bob_p):
    room = room_create(actor=alice_p, name="general")
    room_join(actor=bob_p, room_id=room.pk)
    message_send(actor=bob_p, room_id=room.pk, client_id="c", body="typo")
    url = f"{ROOMS}{room.pk}/messages/1/"

    assert alice.patch(url, {"body": "not mine"}, format="json").status_code == 403
    edited = bob_api.patch(url, {"body": "fixed"}, format="json")
    assert edited.status_code == 200 and edited.json()["body"] == "fixed" and edited.json()["edited_at"]
    deleted = alice.delete(url)  # the owner moderates
    assert deleted.status_code == 200
    assert (deleted.json()["deleted"], deleted.json()["body"], deleted.json()["seq"]) == (True, "", 1)
    conflict = bob_api.patch(url, {"body": "again"}, format="json")
    assert conflict.status_code == 409 and error_of(conflict)["code"] == "conflict"
    assert alice.patch(f"{ROOMS}{room.pk}/messages/9/", {"body": "x"}, format="json").status_code == 404


def test_read_marker(alice, bob_api, alice_p, bob_p):
    room = room_create(actor=alice_p, name="general")
    room_join(actor=bob_p, room_id=room.pk)
    for index in range(3):
        message_send(actor=alice_p, room_id=room.pk, client_id=str(index), body="hi")

    assert bob_api.post(f"{ROOMS}{room.pk}/read/", {"seq": 2}, format="json").json() == {"last_read_seq": 2}
    assert bob_api.post(f"{ROOMS}{room.pk}/read/", {"seq": 1}, format="json").json() == {"last_read_seq": 2}
    assert bob_api.post(f"{ROOMS}{room.pk}/read/", {"seq": -1}, format="json").status_code == 400


def test_kick_and_ban(alice, bob_api, public_room, user, bob):
    room, bob_p = public_room, as_principal(bob)
    assert bob_api.post(f"{ROOMS}{room.pk}/members/{user.pk}/kick/").status_code == 403
    assert alice.post(f"{ROOMS}{room.pk}/members/{bob.pk}/kick/").status_code == 204
    room_join(actor=bob_p, room_id=room.pk)

    banned = alice.post(f"{ROOMS}{room.pk}/members/{bob.pk}/ban/", {"reason": "spam"}, format="json")

    assert banned.status_code == 201
    assert banned.json() == {"room_id": room.pk, "user_id": bob.pk, "until": None, "reason": "spam"}
    assert RoomBan.objects.filter(room=room, user=bob).exists()
    assert bob_api.post(f"{ROOMS}{room.pk}/join/").status_code == 403


def test_direct_room(alice, bob_api, user, bob, other_user):
    opened = alice.post(f"{ROOMS}direct/", {"user_id": bob.pk}, format="json")
    again = bob_api.post(f"{ROOMS}direct/", {"user_id": user.pk}, format="json")

    assert (opened.status_code, again.status_code) == (201, 200)
    assert opened.json()["room"]["id"] == again.json()["room"]["id"]
    assert opened.json()["room"]["kind"] == "direct"
    assert alice.post(f"{ROOMS}direct/", {"user_id": other_user.pk}, format="json").status_code == 404


def test_search(alice, alice_p):
    room = room_create(actor=alice_p, name="general")
    message_send(actor=alice_p, room_id=room.pk, client_id="c", body="a fox concert")
    message_send(actor=alice_p, room_id=room.pk, client_id="d", body="cats")

    hits = alice.get("/api/v1/messages/search/", {"q": "fox"}).json()

    assert [(h["room_id"], h["message"]["seq"]) for h in hits] == [(room.pk, 1)]
    assert "fox" in hits[0]["headline"]
    assert alice.get("/api/v1/messages/search/").status_code == 400


def test_api_clients_are_refused(alice_p, tenant):
    from accounts.constants import ApiScope
    from accounts.services.api_clients import api_client_create
    from audit.services import Actor

    issued = api_client_create(tenant=tenant, name="p", scopes=[ApiScope.TENANT_READ], actor=Actor.system())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {issued.key}")

    assert client.get(ROOMS).status_code == 403
    assert not Message.objects.exists()
