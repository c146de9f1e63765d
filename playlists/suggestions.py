"""The suggestion model: which tracks to suggest next to a set of tracks.

Two kinds of neighbours per track (``TrackSimilarity``, ``SimilarityKind``):

- co-occurrence: tracks found in the same "baskets". A basket is one playlist's
  tracks, or one listening session of a user (plays less than
  ``SUGGESTION_SESSION_GAP_MINUTES`` apart). Similarity is the cosine of the
  tracks' basket vectors: ``together / sqrt(n_i * n_j)``, where ``n_i`` counts
  the baskets holding track i.
- audio: tracks whose audio features (tempo, energy, danceability, valence; all
  four must be set) are close. Features are standardised per tenant, so tempo
  in BPM weighs no more than a 0..1 feature; similarity is
  ``1 / (1 + euclidean distance)``, in (0, 1].

Each track keeps its ``SUGGESTION_NEIGHBOURS`` best neighbours of each kind.

What this module owns: the pure computation (numpy/scipy, no Django; it scales
to ~100k tracks and baskets because co-occurrence is a sparse product taken one
block of tracks at a time, and audio neighbours come from a k-d tree, so
neither builds a track-by-track matrix), the rebuild service, the read that
ranks suggestions, and their metrics. It is one module rather than a
service/selector pair because the read only makes sense against the scores the
rebuild writes. The Celery entry points are in ``playlists.tasks``; the beat
schedule is in settings.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, groupby
from operator import itemgetter

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from prometheus_client import Counter, Histogram
from scipy import sparse
from scipy.spatial import KDTree

from .constants import SimilarityKind
from .models import PlaylistItem, Track, TrackPlay, TrackSimilarity

# No label carries a tenant: the series count stays fixed. A gauge of pairs
# would only show whichever tenant was rebuilt last, so pairs are a counter.
REBUILD_SECONDS = Histogram(
    "playlists_suggestions_rebuild_seconds",
    "Time to rebuild one tenant's suggestion model.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 180, 600),
)
PAIRS_WRITTEN = Counter("playlists_suggestions_pairs_written_total", "Neighbour pairs written by rebuilds.", ["kind"])

AUDIO_FEATURES = ("tempo", "energy", "danceability", "valence")
# Audio similarity is the fallback for tracks no basket holds yet: at a quarter
# of the weight, a neighbour that co-occurs outranks one that only sounds alike.
AUDIO_WEIGHT = 0.25
# Pairs (non-zeros of the track-by-track product) computed at once, at most:
# about 60 bytes each through the top-k selection, so ~120 MB a block however
# large the catalog is. Popular tracks co-occur with thousands of others, so
# blocks are cut by this count, not by a number of rows.
CO_OCCURRENCE_BLOCK_PAIRS = 2_000_000
# Tracks whose audio neighbours are queried at once (two arrays of K+1 each).
AUDIO_BLOCK_ROWS = 8192
# First key of the rebuild's advisory locks (the second is the tenant id): a
# fixed value no other lock in the project uses (crc32 of "playlists.suggestions_rebuild").
REBUILD_LOCK_CLASS = 1174909061
# Rows fetched per round trip while streaming playlist items and plays.
READ_CHUNK_SIZE = 10_000
# Rows per INSERT: large enough to amortise round trips, small enough to keep
# one statement's parameters and the model instances of a batch modest.
INSERT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class Neighbours:
    """Neighbour pairs as parallel arrays, one entry per (track, similar) pair.
    ``together``: baskets holding both (0 for audio neighbours)."""

    track: np.ndarray
    similar: np.ndarray
    score: np.ndarray
    together: np.ndarray

    def __len__(self) -> int:
        return len(self.track)

    def batches(self, size: int) -> Iterator[list[tuple[int, int, float, int]]]:
        """The pairs as Python ``(track, similar, score, together)`` tuples, ``size`` at a time."""
        for start in range(0, len(self), size):
            part = slice(start, start + size)
            columns = (self.track, self.similar, self.score, self.together)
            yield list(zip(*(column[part].tolist() for column in columns), strict=True))

    @classmethod
    def empty(cls) -> Neighbours:
        ids = np.empty(0, dtype=np.int64)
        return cls(track=ids, similar=ids, score=np.empty(0), together=ids)


@dataclass(frozen=True)
class RebuildResult:
    baskets: int
    co_occurrence_pairs: int
    audio_pairs: int
    replaced: int


@dataclass(frozen=True)
class Suggestion:
    """One suggested track. ``because_track_id`` is the track ``reason`` names and
    ``kind`` the evidence behind it. ``score`` sums similarities to the given
    tracks; with no given tracks it is the track's co-occurrence count."""

    track: Track
    score: float
    reason: str
    because_track_id: int
    kind: str


# --- Pure computation ----------------------------------------------------------


def sessions_split(plays: Iterable[tuple[int, int, datetime]], *, gap: timedelta) -> Iterator[list[int]]:
    """The listening sessions of ``(user_id, track_id, played_at)`` plays ordered
    by user then time, as lists of track ids: a session ends at a change of user
    or when the next play is ``gap`` or more after the previous one."""
    session: list[int] = []
    last_user, last_at = None, None
    for user_id, track_id, played_at in plays:
        if session and (user_id != last_user or played_at - last_at >= gap):
            yield session
            session = []
        session.append(track_id)
        last_user, last_at = user_id, played_at
    if session:
        yield session


def basket_matrix(baskets: Iterable[Sequence[int]]) -> tuple[sparse.csr_array, np.ndarray]:
    """The 0/1 track-by-basket incidence matrix and the track id of each row
    (ascending). A track twice in one basket counts once; empty baskets are skipped."""
    # Typed arrays: millions of entries as Python ints would take several times the memory.
    track_column, basket_column = array("q"), array("q")
    n_baskets = 0
    for basket in baskets:
        distinct = set(basket)
        if distinct:
            track_column.extend(distinct)
            basket_column.extend([n_baskets] * len(distinct))
            n_baskets += 1
    track_ids, rows = np.unique(np.frombuffer(track_column, dtype=np.int64), return_inverse=True)
    ones = np.ones(len(rows), dtype=np.int32)
    cols = np.frombuffer(basket_column, dtype=np.int64)
    matrix = sparse.csr_array((ones, (rows, cols)), shape=(len(track_ids), n_baskets))
    return matrix, track_ids


def co_occurrence_neighbours(
    matrix: sparse.csr_array, track_ids: np.ndarray, *, k: int, block_pairs: int = CO_OCCURRENCE_BLOCK_PAIRS
) -> Neighbours:
    """The ``k`` most similar tracks of each track by cosine over baskets (self
    excluded; ties go to the lower track id). ``matrix`` and ``track_ids`` come
    from ``basket_matrix``. Computed a block of rows at a time, each block about
    ``block_pairs`` candidate pairs (a single row may exceed it)."""
    if len(track_ids) < 2:
        return Neighbours.empty()
    baskets_per_track = matrix.sum(axis=1).astype(np.float64)
    by_basket = matrix.T.tocsr()
    # A row's pairs are at most the summed sizes of its baskets, and at most every track.
    pairs_bound = np.minimum(matrix @ by_basket.sum(axis=1), len(track_ids))
    blocks = [
        _co_occurrence_block(matrix[start:stop], by_basket, baskets_per_track, start=start, k=k)
        for start, stop in _row_ranges(pairs_bound, budget=block_pairs)
    ]
    rows, cols, scores, together = (np.concatenate(column) for column in zip(*blocks, strict=True))
    return Neighbours(track=track_ids[rows], similar=track_ids[cols], score=scores, together=together)


def _co_occurrence_block(
    block: sparse.csr_array, by_basket: sparse.csr_array, baskets_per_track: np.ndarray, *, start: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    counts = (block @ by_basket).tocoo()  # row-major, as the product is CSR
    rows, cols = counts.row + start, counts.col
    others = rows != cols
    rows, cols, together = rows[others], cols[others], counts.data[others].astype(np.int64)
    scores = together / np.sqrt(baskets_per_track[rows] * baskets_per_track[cols])
    keep = _top_k_per_row(rows, cols, scores, k=k)
    return rows[keep], cols[keep], scores[keep], together[keep]


def _row_ranges(cost: np.ndarray, *, budget: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges covering ``cost``, each costing
    about ``budget`` at most (up to one row more)."""
    cuts = np.searchsorted(np.cumsum(cost), np.arange(budget, cost.sum(), budget), side="right")
    edges = np.unique(np.concatenate(([0], cuts, [len(cost)])))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _top_k_per_row(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, *, k: int) -> np.ndarray:
    """Mask of each row's ``k`` best entries (highest score, ties to the lower
    column); ``rows`` is sorted. Only rows with more than ``k`` entries are
    sorted, each on its own: one sort of every pair of a block is several times slower."""
    keep = np.ones(len(rows), dtype=bool)
    starts = np.flatnonzero(np.diff(rows, prepend=-1))
    stops = np.append(starts[1:], len(rows))
    for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
        if hi - lo > k:
            best = np.lexsort((cols[lo:hi], -scores[lo:hi]))[:k]
            keep[lo:hi] = False
            keep[lo + best] = True
    return keep


def audio_neighbours(
    track_ids: np.ndarray, features: np.ndarray, *, k: int, block_rows: int = AUDIO_BLOCK_ROWS
) -> Neighbours:
    """The ``k`` nearest tracks of each track in standardised feature space
    (``features``: one row of ``AUDIO_FEATURES`` per id), self excluded, scored
    ``1 / (1 + distance)``. Among equally near tracks the k-d tree picks which to
    keep (the same way on every run)."""
    if len(track_ids) < 2:
        return Neighbours.empty()
    points = _standardise(features)
    tree = KDTree(points)
    # One more than k, since a track is usually its own nearest point.
    nearest = min(k + 1, len(track_ids))
    blocks = []
    for start in range(0, len(track_ids), block_rows):
        distances, cols = tree.query(points[start : start + block_rows], k=nearest)
        rows = np.arange(start, start + len(cols))[:, np.newaxis]
        # Among identical points a track need not come first, so drop it
        # wherever it is and keep the first k others.
        others = cols != rows
        keep = others & (np.cumsum(others, axis=1) <= k)
        blocks.append((np.broadcast_to(rows, cols.shape)[keep], cols[keep], 1.0 / (1.0 + distances[keep])))
    rows, cols, scores = (np.concatenate(column) for column in zip(*blocks, strict=True))
    together = np.zeros(len(rows), dtype=np.int64)
    return Neighbours(track=track_ids[rows], similar=track_ids[cols], score=scores, together=together)


def _standardise(features: np.ndarray) -> np.ndarray:
    spread = features.std(axis=0)
    # A feature every track shares says nothing about which tracks are alike.
    spread[spread == 0] = 1.0
    return (features - features.mean(axis=0)) / spread


# --- Rebuild (service) ---------------------------------------------------------------


def suggestions_rebuild(*, tenant_id: int) -> RebuildResult:
    """Recompute the tenant's neighbours from its playlists, plays and audio
    features, and replace its ``TrackSimilarity`` rows in one transaction.

    Precondition: the tenant exists. Reads and writes only the tenant's rows.
    The computation runs outside the transaction; the write takes a per-tenant
    advisory lock, so two rebuilds of one tenant replace the rows one after the
    other without locking the tenant row itself (a write of many rows can take
    minutes). Idempotent: the same data gives the same rows. Emits no events.
    """
    with REBUILD_SECONDS.time():
        matrix, track_ids = basket_matrix(_tenant_baskets(tenant_id=tenant_id))
        k = settings.SUGGESTION_NEIGHBOURS
        by_kind = {
            SimilarityKind.CO_OCCURRENCE: co_occurrence_neighbours(matrix, track_ids, k=k),
            SimilarityKind.AUDIO: audio_neighbours(*_tenant_features(tenant_id=tenant_id), k=k),
        }
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # SQLite (the embedded default) has one writer at a time anyway.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [REBUILD_LOCK_CLASS, tenant_id])
            replaced, _ = TrackSimilarity.objects.filter(tenant_id=tenant_id).delete()
            for kind, neighbours in by_kind.items():
                _similarities_insert(tenant_id=tenant_id, kind=kind, neighbours=neighbours)
    for kind, neighbours in by_kind.items():
        PAIRS_WRITTEN.labels(kind=kind.value).inc(len(neighbours))
    return RebuildResult(
        baskets=matrix.shape[1],
        co_occurrence_pairs=len(by_kind[SimilarityKind.CO_OCCURRENCE]),
        audio_pairs=len(by_kind[SimilarityKind.AUDIO]),
        replaced=replaced,
    )


def _tenant_baskets(*, tenant_id: int) -> Iterator[list[int]]:
    """Each playlist's tracks, then each listening session's, streamed from the database."""
    # The track's tenant is checked too, so a stray cross-tenant reference can
    # never turn into a suggestion of another tenant's track.
    items = (
        PlaylistItem.objects.filter(tenant_id=tenant_id, track__tenant_id=tenant_id)
        .order_by("playlist_id")
        .values_list("playlist_id", "track_id")
        .iterator(chunk_size=READ_CHUNK_SIZE)
    )
    playlists = ([track_id for _, track_id in group] for _, group in groupby(items, key=itemgetter(0)))
    plays = (
        TrackPlay.objects.filter(tenant_id=tenant_id, track__tenant_id=tenant_id)
        .order_by("user_id", "played_at", "id")
        .values_list("user_id", "track_id", "played_at")
        .iterator(chunk_size=READ_CHUNK_SIZE)
    )
    sessions = sessions_split(plays, gap=timedelta(minutes=settings.SUGGESTION_SESSION_GAP_MINUTES))
    return chain(playlists, sessions)


def _tenant_features(*, tenant_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and feature rows of the tenant's tracks that have all four features."""
    has_features = {f"{name}__isnull": False for name in AUDIO_FEATURES}
    rows = list(
        Track.objects.filter(tenant_id=tenant_id, **has_features).order_by("id").values_list("id", *AUDIO_FEATURES)
    )
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), 1 + len(AUDIO_FEATURES))
    return table[:, 0].astype(np.int64), table[:, 1:]


def _similarities_insert(*, tenant_id: int, kind: str, neighbours: Neighbours) -> None:
    for batch in neighbours.batches(INSERT_BATCH_SIZE):
        TrackSimilarity.objects.bulk_create(
            [
                TrackSimilarity(
                    tenant_id=tenant_id, track_id=track, similar_id=similar, kind=kind, score=score, together=together
                )
                for track, similar, score, together in batch
            ]
        )


# --- Read (selector) ------------------------------------------------------------------


@dataclass
class _Evidence:
    """What the given tracks say about one candidate: summed similarity per kind,
    and per kind the given track contributing the most."""

    total: dict[str, float] = field(default_factory=dict)
    because: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float:
        co = self.total.get(SimilarityKind.CO_OCCURRENCE, 0.0)
        return co + AUDIO_WEIGHT * self.total.get(SimilarityKind.AUDIO, 0.0)

    @property
    def kind(self) -> str:
        return SimilarityKind.CO_OCCURRENCE if SimilarityKind.CO_OCCURRENCE in self.because else SimilarityKind.AUDIO

    @property
    def because_id(self) -> int:
        return self.because[self.kind]


def suggestions_for_tracks(*, tenant_id: int, track_ids: list[int], limit: int) -> list[Suggestion]:
    """Up to ``limit`` (at most ``SUGGESTION_MAX_RESULTS``) of the tenant's tracks
    to suggest next to ``track_ids``, best first (ties by track id), never one of
    ``track_ids``.

    A candidate is a neighbour of a given track; its score sums its
    co-occurrence similarity to every given track plus ``AUDIO_WEIGHT`` times its
    audio similarity. ``reason`` names the given track with the most co-occurrence
    ("often with ..."), or, for a candidate only audio links, the closest-sounding
    one ("sounds like ..."). With no ``track_ids``: the tenant's most co-occurring
    tracks (see ``_suggestions_popular``). Reads the model the last rebuild wrote.
    """
    limit = min(limit, settings.SUGGESTION_MAX_RESULTS)
    if limit <= 0:
        return []
    if not track_ids:
        return _suggestions_popular(tenant_id=tenant_id, limit=limit)
    evidence = _evidence_for(tenant_id=tenant_id, track_ids=set(track_ids))
    ranked = sorted(evidence.items(), key=lambda item: (-item[1].score, item[0]))[:limit]
    tracks = _tracks_in_bulk(
        tenant_id=tenant_id, ids=[i for candidate, found in ranked for i in (candidate, found.because_id)]
    )
    return [
        _suggestion(track=tracks[candidate], because=tracks[found.because_id], score=found.score, kind=found.kind)
        for candidate, found in ranked
        if candidate in tracks and found.because_id in tracks
    ]


def _evidence_for(*, tenant_id: int, track_ids: set[int]) -> dict[int, _Evidence]:
    rows = (
        TrackSimilarity.objects.filter(tenant_id=tenant_id, track_id__in=track_ids)
        .exclude(similar_id__in=track_ids)
        # Strongest first within (candidate, kind): the first row seen names the reason.
        .order_by("similar_id", "kind", "-score", "track_id")
        .values_list("similar_id", "kind", "track_id", "score")
    )
    evidence: dict[int, _Evidence] = {}
    for candidate, kind, given, score in rows:
        found = evidence.setdefault(candidate, _Evidence())
        found.total[kind] = found.total.get(kind, 0.0) + score
        found.because.setdefault(kind, given)
    return evidence


def _suggestions_popular(*, tenant_id: int, limit: int) -> list[Suggestion]:
    """The tracks with the most co-occurrence in the model: the sum of ``together``
    over their kept co-occurrence neighbours, i.e. how often they share a playlist
    or a session with the tracks closest to them. Each names its strongest
    neighbour as the reason. Tracks no basket holds never appear here."""
    totals = dict(
        TrackSimilarity.objects.filter(tenant_id=tenant_id, kind=SimilarityKind.CO_OCCURRENCE)
        .values("track_id")
        .annotate(total=Sum("together"))
        .order_by("-total", "track_id")
        .values_list("track_id", "total")[:limit]
    )
    strongest = dict(
        TrackSimilarity.objects.filter(tenant_id=tenant_id, kind=SimilarityKind.CO_OCCURRENCE, track_id__in=totals)
        .order_by("track_id", "-together", "-score", "similar_id")
        .distinct("track_id")
        .values_list("track_id", "similar_id")
    )
    tracks = _tracks_in_bulk(tenant_id=tenant_id, ids=[*totals, *strongest.values()])
    return [
        _suggestion(
            track=tracks[track_id],
            because=tracks[strongest[track_id]],
            score=float(total),
            kind=SimilarityKind.CO_OCCURRENCE,
        )
        for track_id, total in totals.items()
        if track_id in tracks and strongest.get(track_id) in tracks
    ]


def _tracks_in_bulk(*, tenant_id: int, ids: list[int]) -> dict[int, Track]:
    return Track.objects.filter(tenant_id=tenant_id).in_bulk(ids)


def _suggestion(*, track: Track, because: Track, score: float, kind: str) -> Suggestion:
    verb = "often with" if kind == SimilarityKind.CO_OCCURRENCE else "sounds like"
    return Suggestion(
        track=track,
        score=score,
        reason=f"{verb} {because.title} by {because.artist}",
        because_track_id=because.pk,
        kind=str(kind),
    )
