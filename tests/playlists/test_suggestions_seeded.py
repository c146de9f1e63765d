"""Suggestions on the demo data, end to end: seed, rebuild the model as the
Celery task does, ask through the same read the WebSocket and REST use."""

from __future__ import annotations

import pytest

from accounts.models import Tenant, User
from accounts.services.demo import LISTENING_MOODS, demo_seed
from accounts.services.tokens import principal_for_user
from playlists.models import Playlist, PlaylistItem
from playlists.selectors import playlist_suggestions
from playlists.tasks import suggestions_rebuild

pytestmark = pytest.mark.django_db


def test_a_mood_playlist_is_completed_from_its_own_scene():
    demo_seed(password="demo-pass-2026")
    demo = Tenant.objects.get(slug="demo")
    assert suggestions_rebuild.run(demo.pk)["co_occurrence_pairs"] > 0

    alice = User.objects.get(username="alice")
    mood = LISTENING_MOODS["alice"][0]
    playlist = Playlist.objects.get(owner=alice, title=f"{mood[0]} and friends")
    present = set(PlaylistItem.objects.filter(playlist=playlist).values_list("track_id", flat=True))

    suggestions = playlist_suggestions(actor=principal_for_user(alice), playlist_id=playlist.pk, limit=10)

    assert len(suggestions) == 10
    assert not present & {s["track"]["id"] for s in suggestions}
    scores = [s["score"] for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    # The scene's other tracks, learnt from playlists and listening sessions, lead.
    top = suggestions[:5]
    assert all(s["track"]["artist"] in mood for s in top), [s["track"]["artist"] for s in top]
    assert all(s["reason"].startswith("often with ") for s in top)
    assert all(s["because_track"] in present for s in suggestions)
