"""The suggestion model: the pure computation on hand-computed examples, then
``suggestions_rebuild`` and ``suggestions_for_tracks`` on real PostgreSQL rows
(ranking, reasons, the audio fallback, listening sessions, tenant isolation,
idempotency), then the Celery entry points called directly."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from accounts.constants import TenantStatus
from playlists.constants import SimilarityKind
from playlists.models import Playlist, PlaylistItem, Track, TrackPlay, TrackSimilarity
from playlists.suggestions import (
    Neighbours,
    audio_neighbours,
    basket_matrix,
    co_occurrence_neighbours,
    sessions_split,
    suggestions_for_tracks,
    suggestions_rebuild,
)
from playlists.tasks import suggestions_rebuild as suggestions_rebuild_task
from playlists.tasks import suggestions_rebuild_all as suggestions_rebuild_all_task
from tests.factories import TenantFactory

T0 = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)


def pairs_of(neighbours: Neighbours) -> dict[tuple[int, int], tuple[float, int]]:
    return {
        (track, similar): (score, together)
        for batch in neighbours.batches(1000)
        for track, similar, score, together in batch
    }


def make_track(tenant, title: str, *, features: tuple[float, float, float, float] | None = None) -> Track:
    tempo, energy, danceability, valence = features or (None, None, None, None)
    return Track.objects.create(
        tenant=tenant,
        uri=f"test:{tenant.slug}:{title}",
        title=title,
        artist=f"{title} Band",
        duration_ms=200_000,
        tempo=tempo,
        energy=energy,
        danceability=danceability,
        valence=valence,
    )


def make_playlist(owner, *tracks: Track, tenant=None) -> Playlist:
    tenant = tenant or tracks[0].tenant
    playlist = Playlist.objects.create(tenant=tenant, owner=owner, title="Mix")
    PlaylistItem.objects.bulk_create(
        PlaylistItem(tenant=tenant, playlist=playlist, track=track, position=position)
        for position, track in enumerate(tracks)
    )
    return playlist


def play(user, track: Track, *, minutes: float) -> None:
    TrackPlay.objects.create(tenant=track.tenant, user=user, track=track, played_at=T0 + timedelta(minutes=minutes))


def similarity_rows(tenant) -> list[tuple]:
    return list(
        TrackSimilarity.objects.filter(tenant=tenant)
        .order_by("kind", "track_id", "similar_id")
        .values_list("tenant_id", "track_id", "similar_id", "kind", "score", "together")
    )


def suggested(tenant, *tracks: Track, limit: int = 50) -> list:
    return suggestions_for_tracks(tenant_id=tenant.pk, track_ids=[track.pk for track in tracks], limit=limit)


# --- Pure computation --------------------------------------------------------------


def test_co_occurrence_is_the_cosine_over_baskets():
    # Baskets holding each track: 1 in two, 2 in three, 3 in two, 4 in one (alone).
    matrix, track_ids = basket_matrix([[1, 2, 3], [1, 2], [2, 3], [4]])

    pairs = pairs_of(co_occurrence_neighbours(matrix, track_ids, k=5))

    two_of_six = 2 / math.sqrt(2 * 3)
    assert pairs == {
        (1, 2): (pytest.approx(two_of_six), 2),
        (2, 1): (pytest.approx(two_of_six), 2),
        (2, 3): (pytest.approx(two_of_six), 2),
        (3, 2): (pytest.approx(two_of_six), 2),
        (1, 3): (pytest.approx(0.5), 1),
        (3, 1): (pytest.approx(0.5), 1),
    }


def test_co_occurrence_keeps_the_k_best_and_breaks_ties_by_track_id():
    matrix, track_ids = basket_matrix([[1, 2, 3], [1, 2], [2, 3], [4]])

    pairs = pairs_of(co_occurrence_neighbours(matrix, track_ids, k=1))

    # Track 2 is as close to 1 as to 3: the lower id wins.
    assert set(pairs) == {(1, 2), (2, 1), (3, 2)}


def test_co_occurrence_blocks_do_not_change_the_result():
    rng = np.random.default_rng(7)
    baskets = [rng.choice(40, size=rng.integers(1, 12)).tolist() for _ in range(60)]
    matrix, track_ids = basket_matrix(baskets)

    whole = pairs_of(co_occurrence_neighbours(matrix, track_ids, k=4))
    row_by_row = pairs_of(co_occurrence_neighbours(matrix, track_ids, k=4, block_pairs=1))

    assert whole == row_by_row
    assert all(track != similar for track, similar in whole)


def test_a_track_twice_in_a_basket_counts_once_and_empty_baskets_are_skipped():
    matrix, track_ids = basket_matrix([[5, 5, 9], [], [9]])

    assert track_ids.tolist() == [5, 9]
    assert matrix.toarray().tolist() == [[1, 0], [1, 1]]


def test_sessions_end_at_the_gap_or_a_change_of_user():
    gap = timedelta(minutes=30)
    plays = [
        (1, 10, T0),
        (1, 11, T0 + timedelta(minutes=29)),
        (1, 12, T0 + timedelta(minutes=59)),  # exactly the gap after the previous play
        (2, 13, T0 + timedelta(minutes=60)),
        (2, 14, T0 + timedelta(minutes=61)),
    ]

    assert list(sessions_split(plays, gap=gap)) == [[10, 11], [12], [13, 14]]


def test_audio_similarity_is_inverse_distance_in_standard_units():
    # Only energy differs: standardised it is -1 and +1, a distance of 2.
    features = np.array([[120, 0.2, 0.5, 0.5], [120, 0.8, 0.5, 0.5]])

    pairs = pairs_of(audio_neighbours(np.array([10, 11]), features, k=5))

    assert pairs == {(10, 11): (pytest.approx(1 / 3), 0), (11, 10): (pytest.approx(1 / 3), 0)}


def test_audio_neighbours_are_the_nearest_and_never_the_track_itself():
    # 20 and 21 sound identical, 22 is close to them, 23 is far from everything.
    features = np.array([[100, 0.5, 0.5, 0.5], [100, 0.5, 0.5, 0.5], [104, 0.55, 0.5, 0.45], [180, 0.95, 0.1, 0.9]])

    pairs = pairs_of(audio_neighbours(np.array([20, 21, 22, 23]), features, k=1))

    # 22 is as near to 20 as to 21: either may be kept, the other is not.
    assert set(pairs) - {(22, 20), (22, 21)} == {(20, 21), (21, 20), (23, 22)}
    assert len(pairs) == 4
    assert pairs[(20, 21)][0] == pytest.approx(1.0)


# --- Rebuild and suggestions ----------------------------------------------------------


def test_a_track_often_together_outranks_one_together_once(tenant, user):
    a, b, c, d = (make_track(tenant, name) for name in "ABCD")
    make_playlist(user, a, b)
    make_playlist(user, a, b, d)
    make_playlist(user, b, a)
    make_playlist(user, a, c)

    suggestions_rebuild(tenant_id=tenant.pk)
    result = suggested(tenant, a)

    # cos(A, B) = 3 / sqrt(4 * 3); cos(A, C) = cos(A, D) = 1 / sqrt(4 * 1), tied, by id.
    assert [s.track for s in result] == [b, c, d]
    assert result[0].score == pytest.approx(3 / math.sqrt(12))
    assert (result[0].reason, result[0].because_track_id, result[0].kind) == (
        "often with A by A Band",
        a.pk,
        SimilarityKind.CO_OCCURRENCE,
    )


def test_given_tracks_are_excluded_and_the_reason_names_the_strongest(tenant, user):
    a, b, x = (make_track(tenant, name) for name in ("A", "B", "X"))
    make_playlist(user, a, x)
    make_playlist(user, b, x)
    make_playlist(user, b, x)
    make_playlist(user, a, b)

    suggestions_rebuild(tenant_id=tenant.pk)
    result = suggested(tenant, a, b)

    # X is with A once (1 / sqrt(2 * 3)) and with B twice (2 / sqrt(3 * 3)).
    assert [s.track for s in result] == [x]
    assert result[0].score == pytest.approx(1 / math.sqrt(6) + 2 / 3)
    assert (result[0].reason, result[0].because_track_id) == ("often with B by B Band", b.pk)


def test_a_new_track_gets_tracks_that_sound_like_it(tenant, user):
    a = make_track(tenant, "A", features=(120, 0.80, 0.70, 0.60))
    b = make_track(tenant, "B", features=(90, 0.20, 0.30, 0.20))
    make_track(tenant, "No features")
    make_playlist(user, a, b)
    new = make_track(tenant, "New", features=(122, 0.78, 0.72, 0.58))

    suggestions_rebuild(tenant_id=tenant.pk)
    result = suggested(tenant, new)

    assert [s.track for s in result] == [a, b]
    assert [(s.reason, s.because_track_id, s.kind) for s in result] == [
        ("sounds like New by New Band", new.pk, SimilarityKind.AUDIO)
    ] * 2
    # Co-occurrence still leads for a track that has it, audio only adds to it.
    with_history = suggested(tenant, a)
    assert [(s.track, s.kind) for s in with_history] == [(b, SimilarityKind.CO_OCCURRENCE), (new, SimilarityKind.AUDIO)]
    assert with_history[0].reason == "often with A by A Band"


def test_listening_sessions_are_baskets_split_by_the_gap(tenant, user, settings):
    a, b, c, d, e = (make_track(tenant, name) for name in "ABCDE")
    for track, minutes in ((a, 0), (b, 10), (c, 20), (d, 60), (e, 65)):
        play(user, track, minutes=minutes)

    assert suggestions_rebuild(tenant_id=tenant.pk).baskets == 2
    assert {s.track for s in suggested(tenant, a)} == {b, c}
    assert [(s.track, s.reason) for s in suggested(tenant, d)] == [(e, "often with D by D Band")]

    settings.SUGGESTION_SESSION_GAP_MINUTES = 41
    assert suggestions_rebuild(tenant_id=tenant.pk).baskets == 1
    assert {s.track for s in suggested(tenant, a)} == {b, c, d, e}


def test_no_given_tracks_gives_the_most_co_occurring(tenant, user):
    a, b, c = (make_track(tenant, name) for name in "ABC")
    make_track(tenant, "Never together")
    make_playlist(user, a, b, c)
    make_playlist(user, a, b)
    make_playlist(user, a, c)

    suggestions_rebuild(tenant_id=tenant.pk)
    result = suggested(tenant)

    # A shares 2 baskets with B and 2 with C; B and C share 2 with A and 1 with each other.
    assert [(s.track, s.score) for s in result] == [(a, 4.0), (b, 3.0), (c, 3.0)]
    assert [s.reason for s in result] == ["often with B by B Band", "often with A by A Band", "often with A by A Band"]


def test_the_limit_is_bounded(tenant, user, settings):
    tracks = [make_track(tenant, f"T{n}") for n in range(5)]
    make_playlist(user, *tracks)
    suggestions_rebuild(tenant_id=tenant.pk)
    settings.SUGGESTION_MAX_RESULTS = 2

    assert len(suggested(tenant, tracks[0], limit=10)) == 2
    assert len(suggested(tenant, limit=10)) == 2
    assert suggested(tenant, tracks[0], limit=0) == []


def test_tenants_never_see_each_others_tracks(tenant, other_tenant, user, other_user):
    a, b = make_track(tenant, "A"), make_track(tenant, "B")
    make_playlist(user, a, b)
    make_playlist(user, a, b)
    x, y = make_track(other_tenant, "A"), make_track(other_tenant, "B")
    make_playlist(other_user, x, y)
    # A stray reference to our track from their playlist must not link it to theirs.
    make_playlist(other_user, x, a, tenant=other_tenant)

    suggestions_rebuild(tenant_id=tenant.pk)
    ours = similarity_rows(tenant)
    suggestions_rebuild(tenant_id=other_tenant.pk)

    assert similarity_rows(tenant) == ours
    theirs = {x.pk, y.pk}
    assert all({row[1], row[2]} <= theirs for row in similarity_rows(other_tenant))
    assert [s.track for s in suggested(tenant, a)] == [b]
    assert {s.track for s in suggested(tenant)} == {a, b}
    assert suggested(tenant, x) == []
    assert suggested(other_tenant, a) == []


def test_rebuild_is_idempotent(tenant, user):
    a = make_track(tenant, "A", features=(120, 0.8, 0.7, 0.6))
    b = make_track(tenant, "B", features=(90, 0.2, 0.3, 0.2))
    c = make_track(tenant, "C", features=(100, 0.5, 0.5, 0.5))
    make_playlist(user, a, b, c)
    make_playlist(user, a, c)
    play(user, b, minutes=0)
    play(user, c, minutes=5)

    first = suggestions_rebuild(tenant_id=tenant.pk)
    rows = similarity_rows(tenant)
    second = suggestions_rebuild(tenant_id=tenant.pk)

    assert similarity_rows(tenant) == rows
    assert (first.baskets, first.co_occurrence_pairs, first.audio_pairs, first.replaced) == (3, 6, 6, 0)
    assert second.replaced == len(rows) == 12


# --- Celery entry points -----------------------------------------------------------------


def test_the_task_rebuilds_one_tenant(tenant, user):
    a, b = make_track(tenant, "A"), make_track(tenant, "B")
    make_playlist(user, a, b)

    assert suggestions_rebuild_task.run(tenant.pk) == {
        "baskets": 1,
        "co_occurrence_pairs": 2,
        "audio_pairs": 0,
        "replaced": 0,
    }
    assert len(similarity_rows(tenant)) == 2


def test_the_task_returns_quietly_for_a_gone_tenant(db):
    gone = TenantFactory(slug="gone")
    gone_id = gone.pk
    gone.delete()

    assert suggestions_rebuild_task.run(gone_id) is None


def test_rebuild_all_enqueues_one_rebuild_per_active_tenant(tenant, other_tenant, monkeypatch):
    suspended = TenantFactory(slug="suspended", status=TenantStatus.SUSPENDED)
    enqueued: list[int] = []
    # Recorded rather than sent: a real broker would keep the messages for the next worker.
    monkeypatch.setattr(suggestions_rebuild_task, "delay", enqueued.append)

    count = suggestions_rebuild_all_task.run()

    assert {tenant.pk, other_tenant.pk} <= set(enqueued)
    assert suspended.pk not in enqueued
    assert count == len(enqueued)
