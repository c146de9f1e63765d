"""Input and output shapes of the playlists REST API.

Inputs check types only; the rules are the services'. Two bodies are passed on
as they are, because their service checks them and names errors by path,
which DRF's nested errors would not: the import rows
(``playlists.services.catalog.track_import``, ``tracks[i].field``) and an
edit's ``op`` (``playlists.services.editing.ops_parse``, ``op.ops[i].index``).
``TrackImportRowSerializer`` and the ``…OpSerializer`` classes only document
those shapes in the OpenAPI schema.

Roles and kinds are plain strings whose values the help text lists, not
choice fields: chat's serializers already give the ``role`` and ``kind`` enum
components their names, and drf-spectacular warns (failing the schema test)
when one field name carries a second choice set.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from ..constants import (
    CLIENT_OP_ID_MAX_LENGTH,
    PLAYLIST_DESCRIPTION_MAX_LENGTH,
    PLAYLIST_TITLE_MAX_LENGTH,
    TRACK_TEXT_MAX_LENGTH,
    TRACK_URI_MAX_LENGTH,
    OpKind,
    Visibility,
)
from ..services.catalog import TRACK_DURATION_MS_MAX, TRACK_TEMPO_MAX

# --- Tracks ---------------------------------------------------------------------


class TrackOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    uri = serializers.CharField()
    title = serializers.CharField()
    artist = serializers.CharField()
    album = serializers.CharField(help_text="Empty when unknown.")
    duration_ms = serializers.IntegerField()
    tempo = serializers.FloatField(allow_null=True, help_text="Beats per minute; null when unknown.")
    energy = serializers.FloatField(allow_null=True, help_text="0..1; null when unknown.")
    danceability = serializers.FloatField(allow_null=True, help_text="0..1; null when unknown.")
    valence = serializers.FloatField(allow_null=True, help_text="0..1 (sad to happy); null when unknown.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TrackListQueryInputSerializer(serializers.Serializer):
    search = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="Keep tracks where every word occurs in the title, artist or album (case-insensitive).",
    )


class TrackImportRowSerializer(serializers.Serializer):
    """One row of an import, for the schema only (the service validates rows)."""

    uri = serializers.CharField(max_length=TRACK_URI_MAX_LENGTH, help_text="Unique in the tenant's catalog.")
    title = serializers.CharField(max_length=TRACK_TEXT_MAX_LENGTH)
    artist = serializers.CharField(max_length=TRACK_TEXT_MAX_LENGTH)
    album = serializers.CharField(max_length=TRACK_TEXT_MAX_LENGTH, required=False, allow_blank=True)
    duration_ms = serializers.IntegerField(min_value=1, max_value=TRACK_DURATION_MS_MAX)
    tempo = serializers.FloatField(min_value=0, max_value=TRACK_TEMPO_MAX, required=False, allow_null=True)
    energy = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    danceability = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    valence = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)


@extend_schema_field(TrackImportRowSerializer(many=True))
class TrackImportRowsField(serializers.ListField):
    """The rows as sent (JSON values), documented as ``TrackImportRow`` objects."""

    child = serializers.JSONField()


class TrackImportInputSerializer(serializers.Serializer):
    tracks = TrackImportRowsField(
        allow_empty=True, help_text="At most TRACK_IMPORT_MAX_TRACKS rows (1000 by default), each URI at most once."
    )


class ImportedTrackOutputSerializer(serializers.Serializer):
    uri = serializers.CharField()
    id = serializers.IntegerField()


class TrackImportOutputSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    tracks = ImportedTrackOutputSerializer(many=True, help_text="Each row's track, in request order.")


# --- Playlists ------------------------------------------------------------------


class RoleField(serializers.CharField):
    """A role on a playlist; the help text ends with the values."""

    values = "`owner`, `editor` or `viewer`."

    def __init__(self, **kwargs):
        kwargs["help_text"] = " ".join(filter(None, [kwargs.get("help_text"), self.values]))
        super().__init__(**kwargs)


class GrantedRoleField(RoleField):
    """A role one can be given (the owner is the creator, for good)."""

    values = "`editor` or `viewer`."


class ClientOpIdField(serializers.CharField):
    """Kept exactly as sent (no trimming): it is compared with the stored one."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", CLIENT_OP_ID_MAX_LENGTH)
        kwargs.setdefault(
            "help_text",
            "Makes the edit idempotent: a retry with the same id gets the first answer (`duplicate: true`). "
            "Defaults to the `Idempotency-Key` header, else a fresh id (then a retry is a new edit).",
        )
        super().__init__(trim_whitespace=False, **kwargs)


class PlaylistListOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    visibility = serializers.ChoiceField(choices=Visibility.choices)
    owner = serializers.IntegerField(source="owner_id")
    owner_username = serializers.CharField(source="owner.username")
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PlaylistCreateInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=PLAYLIST_TITLE_MAX_LENGTH)
    description = serializers.CharField(max_length=PLAYLIST_DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, help_text="Default `private`.")


class PlaylistVisibilityInputSerializer(serializers.Serializer):
    visibility = serializers.ChoiceField(choices=Visibility.choices)

    def validate(self, attrs):
        # Refused rather than ignored: a client sending them expects a change.
        moved = [name for name in ("title", "description") if name in self.initial_data]
        if moved:
            message = "Title and description change through an `update` op (POST …/ops/), so they are in history."
            raise serializers.ValidationError({name: [message] for name in moved})
        return attrs


class PlaylistTrackOutputSerializer(serializers.Serializer):
    """What a playlist shows of a track."""

    id = serializers.IntegerField()
    uri = serializers.CharField()
    title = serializers.CharField()
    artist = serializers.CharField()
    album = serializers.CharField()
    duration_ms = serializers.IntegerField()


class PlaylistItemOutputSerializer(serializers.Serializer):
    item_id = serializers.UUIDField(help_text="Stable: edits name the item by it, not by its index.")
    track_id = serializers.IntegerField()
    added_by = serializers.IntegerField(allow_null=True, help_text="The user who added it; null if gone.")
    added_at = serializers.DateTimeField()
    track = PlaylistTrackOutputSerializer(allow_null=True)


class PlaylistItemsOutputSerializer(serializers.Serializer):
    playlist = serializers.IntegerField()
    revision = serializers.IntegerField(help_text="The revision these items are at: send it as `base_revision`.")
    items = PlaylistItemOutputSerializer(many=True, help_text="In order.")


class PlaylistStateOutputSerializer(PlaylistItemsOutputSerializer):
    title = serializers.CharField()
    description = serializers.CharField()


class PlaylistDetailOutputSerializer(PlaylistStateOutputSerializer):
    """The snapshot, as ``playlist.subscribe`` acks it and ``resync_required`` carries it, plus the caller's role."""

    visibility = serializers.ChoiceField(choices=Visibility.choices)
    owner = serializers.IntegerField(help_text="The owner's user id.")
    role = RoleField(help_text="The caller's role on the playlist.")


# Ops: documentation only (the service parses ``op`` and names errors by path).


class InsertOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="`insert`")
    index = serializers.IntegerField(help_text="0..length of the list at base_revision.")
    track = serializers.IntegerField(help_text="A track of the tenant's catalog.")
    item_id = serializers.UUIDField(required=False, help_text="The new item's id; chosen by the server if omitted.")


class RemoveOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="`remove`; an item already gone is a no-op.")
    item_id = serializers.UUIDField()


class MoveOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="`move`")
    item_id = serializers.UUIDField()
    index = serializers.IntegerField(help_text="Its place in the list at base_revision, once taken out.")


class UpdateOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="`update`: title, description or both.")
    title = serializers.CharField(required=False, max_length=PLAYLIST_TITLE_MAX_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, max_length=PLAYLIST_DESCRIPTION_MAX_LENGTH)


_SINGLE_OPS = {
    "insert": InsertOpSerializer,
    "remove": RemoveOpSerializer,
    "move": MoveOpSerializer,
    "update": UpdateOpSerializer,
}


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="PlaylistSingleOp", serializers=_SINGLE_OPS, resource_type_field_name="op", many=True
    )
)
class BatchOpsField(serializers.ListField):
    child = serializers.JSONField()


class BatchOpSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="`batch`: applied all or nothing, as one revision.")
    ops = BatchOpsField(help_text="At most PLAYLIST_MAX_BATCH_OPS (100 by default) single ops, in order.")


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="PlaylistEditOp",
        serializers={**_SINGLE_OPS, "batch": BatchOpSerializer},
        resource_type_field_name="op",
    )
)
class EditOpField(serializers.JSONField):
    """The op as sent (JSON), documented as one of the ``…OpSerializer`` shapes."""


class PlaylistOpInputSerializer(serializers.Serializer):
    base_revision = serializers.IntegerField(help_text="The revision the op was written against.")
    client_op_id = ClientOpIdField()
    op = EditOpField(help_text='One op, or a batch (docs/protocol.md, "Playlists").')


class OpResultOutputSerializer(serializers.Serializer):
    """What became of an edit, as the WebSocket ack reports it."""

    playlist = serializers.IntegerField()
    revision = serializers.IntegerField(help_text="The new revision, or the current one if nothing changed.")
    committed = serializers.BooleanField(help_text="A new revision was written.")
    ops = serializers.ListField(
        child=serializers.DictField(), help_text="The ops as applied (transformed), as `playlist.changed` carries them."
    )
    dropped = serializers.ListField(child=serializers.DictField(), help_text="Ops dropped (a move of a removed item).")
    noops = serializers.ListField(child=serializers.DictField(), help_text="Ops that changed nothing.")
    overridden = serializers.ListField(
        child=serializers.DictField(), help_text="Earlier edits of others this one overrode."
    )
    duplicate = serializers.BooleanField(help_text="A retry of an edit already answered: this is the first answer.")


class ItemAddInputSerializer(serializers.Serializer):
    track = serializers.IntegerField()
    index = serializers.IntegerField(required=False, help_text="Default: the end of the list.")
    base_revision = serializers.IntegerField(
        required=False, help_text="The revision `index` refers to; default: the current one."
    )
    client_op_id = ClientOpIdField()


class ItemMoveInputSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Its new place in the list at base_revision, once taken out.")
    base_revision = serializers.IntegerField(
        required=False, help_text="The revision `index` refers to; default: the current one."
    )
    client_op_id = ClientOpIdField()


class RevertInputSerializer(serializers.Serializer):
    revision = serializers.IntegerField(help_text="Make the playlist what it was at this revision.")
    client_op_id = ClientOpIdField()


class ActorOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


# Item ops counted in a revision's summary, in the order the summary names them.
_SUMMARY_LABELS = (("insert", "added"), ("remove", "removed"), ("move", "moved"))


def revision_summary(*, kind: str, ops: list[dict[str, Any]]) -> str:
    """One line for a history list: "2 added, 1 moved, title changed"."""
    counts = Counter(op.get("op") for op in ops)
    parts = [f"{counts[name]} {label}" for name, label in _SUMMARY_LABELS if counts[name]]
    changed = [
        field
        for op in ops
        if op.get("op") == "update"
        for field in ("title", "description")
        if field in op.get("set", {})
    ]
    parts += [f"{field} changed" for field in dict.fromkeys(changed)]
    text = ", ".join(parts) or "no change"
    return f"revert: {text}" if kind == OpKind.REVERT else text


class PlaylistRevisionOutputSerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    kind = serializers.CharField(help_text="`edit`, or `revert` for a revert.")
    actor = ActorOutputSerializer(allow_null=True, help_text="Null if the user is gone.")
    client_op_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    ops = serializers.ListField(child=serializers.DictField(), help_text="The ops as applied, as replayed by clients.")
    summary = serializers.SerializerMethodField()

    def get_summary(self, entry) -> str:
        return revision_summary(kind=entry.kind, ops=entry.ops)


class CollaboratorOutputSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")
    role = RoleField()
    added_by = serializers.IntegerField(source="added_by_id", allow_null=True)
    created_at = serializers.DateTimeField()


class CollaboratorAddInputSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="A user of the tenant.")
    role = GrantedRoleField()


class CollaboratorRoleInputSerializer(serializers.Serializer):
    role = GrantedRoleField()


class ShareLinkOutputSerializer(serializers.Serializer):
    """A link as its owner sees it later: never its token, only the token's first characters."""

    id = serializers.IntegerField()
    playlist = serializers.IntegerField(source="playlist_id")
    role = GrantedRoleField()
    token_prefix = serializers.CharField(help_text="The token's first characters, to tell links apart.")
    created_by = serializers.IntegerField(source="created_by_id", allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    use_count = serializers.IntegerField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class ShareLinkCreatedOutputSerializer(ShareLinkOutputSerializer):
    """A new link with its token (from the serializer's context)."""

    token = serializers.SerializerMethodField(help_text="Shown this once: only its hash is stored.")

    def get_token(self, link) -> str:
        return self.context["token"]


class ShareLinkCreateInputSerializer(serializers.Serializer):
    role = GrantedRoleField()
    expires_at = serializers.DateTimeField(
        required=False, help_text="Default and latest: PLAYLIST_SHARE_LINK_MAX_DAYS (30) days from now."
    )


class ShareLinkRedeemInputSerializer(serializers.Serializer):
    token = serializers.CharField(trim_whitespace=False)


class ShareLinkRedeemOutputSerializer(serializers.Serializer):
    playlist = serializers.IntegerField(source="playlist_id")
    role = RoleField(help_text="The caller's role now (a higher role they had is kept).")


class SuggestionsQueryInputSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, help_text="How many, clamped to 1..SUGGESTION_MAX_RESULTS (50 by default, also the default)."
    )


class SuggestionOutputSerializer(serializers.Serializer):
    track = PlaylistTrackOutputSerializer()
    score = serializers.FloatField()
    reason = serializers.CharField(help_text="Why, for people.")
    because_track = serializers.IntegerField(
        help_text="The track `reason` names (one of the playlist's, when it has any)."
    )
    kind = serializers.CharField(help_text="The evidence: `co_occurrence` (found together) or `audio` (sounds alike).")


class PlaylistSuggestionsOutputSerializer(serializers.Serializer):
    playlist = serializers.IntegerField()
    suggestions = SuggestionOutputSerializer(many=True, help_text="Best first.")
