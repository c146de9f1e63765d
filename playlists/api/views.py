"""REST adapters of the playlists app: parse, call one service or read, render.

Rules live in ``playlists.services`` (who may import, what a valid track is,
who may edit, share or see a playlist) and ``playlists.selectors``; the API's
exception handler renders their domain errors (``spotify_agent.errors``,
``ResyncRequired``) in the API error shape. Tracks are read by users of any
role and by API clients with ``tracks:read``; importing takes what
``track_import`` requires, which the import view declares from the same
constants. Playlists are for users of any role; API clients with
``playlists:read`` may use the GET endpoints only. docs/api.md, "Tracks" and
"Playlists", lists the endpoints.

Every edit, including the item endpoints' conveniences, is one call of
``playlist_apply_op`` (or ``playlist_revert``), the function the WebSocket
``playlist.op`` handler calls, so REST and WebSocket edits follow the same
rules and land in the same op log. The views only fill in what the
conveniences leave out (a base revision, an index, a client op id).
"""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import ApiScope, Role
from audit.services import RequestContext
from spotify_agent.api.pagination import DefaultCursorPagination
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin
from spotify_agent.errors import Invalid, NotFound

from ..constants import CollaboratorRole
from ..models import Playlist, PlaylistCollaborator, PlaylistOp, PlaylistShareLink, Track
from ..selectors import (
    RevisionGone,
    playlist_access,
    playlist_collaborators,
    playlist_revisions,
    playlist_share_links,
    playlist_snapshot,
    playlist_state_at,
    playlist_suggestions,
    playlists_for_user,
    state_payload,
)
from ..services.catalog import TRACK_IMPORT_ROLE, TRACK_IMPORT_SCOPE, track_get, track_import, tracks_for_tenant
from ..services.editing import playlist_apply_op, playlist_revert
from ..services.playlists import playlist_create, playlist_delete, playlist_visibility_set
from ..services.sharing import (
    collaborator_remove,
    collaborator_set,
    share_link_create,
    share_link_redeem,
    share_link_revoke,
)
from .serializers import (
    CollaboratorAddInputSerializer,
    CollaboratorOutputSerializer,
    CollaboratorRoleInputSerializer,
    ItemAddInputSerializer,
    ItemMoveInputSerializer,
    OpResultOutputSerializer,
    PlaylistCreateInputSerializer,
    PlaylistDetailOutputSerializer,
    PlaylistItemsOutputSerializer,
    PlaylistListOutputSerializer,
    PlaylistOpInputSerializer,
    PlaylistRevisionOutputSerializer,
    PlaylistStateOutputSerializer,
    PlaylistSuggestionsOutputSerializer,
    PlaylistVisibilityInputSerializer,
    RevertInputSerializer,
    ShareLinkCreatedOutputSerializer,
    ShareLinkCreateInputSerializer,
    ShareLinkOutputSerializer,
    ShareLinkRedeemInputSerializer,
    ShareLinkRedeemOutputSerializer,
    SuggestionsQueryInputSerializer,
    TrackImportInputSerializer,
    TrackImportOutputSerializer,
    TrackListQueryInputSerializer,
    TrackOutputSerializer,
)

# --- Tracks ---------------------------------------------------------------------

TRACK_TAGS = ["tracks"]


class TrackView(TenantScopedMixin, APIView):
    """Base of the catalog views: tenant from the credential; reading takes any
    role or, for API clients, ``tracks:read``."""

    required_role = Role.MEMBER
    required_scope = ApiScope.TRACKS_READ

    def context(self) -> RequestContext:
        return RequestContext.from_request(self.request)


class TrackListView(TrackView, GenericAPIView):
    """The tenant's catalog, newest first, optionally searched."""

    pagination_class = DefaultCursorPagination
    serializer_class = TrackOutputSerializer
    queryset = Track.objects.none()

    @extend_schema(
        operation_id="tracks_list",
        summary="The tenant's tracks, newest first; `search` over title, artist and album",
        parameters=[
            OpenApiParameter(
                "search", str, required=False, description="Every word must occur in the title, artist or album."
            ),
        ],
        responses={200: TrackOutputSerializer(many=True), **error_responses(400, 401, 403, 429)},
        tags=TRACK_TAGS,
    )
    def get(self, request):
        serializer = TrackListQueryInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        tracks = tracks_for_tenant(tenant_id=self.principal.tenant_id, search=serializer.validated_data.get("search"))
        page = self.paginate_queryset(tracks)
        return self.get_paginated_response(TrackOutputSerializer(page, many=True).data)


class TrackDetailView(TrackView):
    @extend_schema(
        operation_id="tracks_retrieve",
        summary="One track of the tenant's catalog",
        responses={200: TrackOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=TRACK_TAGS,
    )
    def get(self, request, track_id: int):
        track = track_get(tenant_id=self.principal.tenant_id, track_id=track_id)
        return Response(TrackOutputSerializer(track).data)


class TrackImportView(TrackView):
    required_role = TRACK_IMPORT_ROLE
    required_scope = TRACK_IMPORT_SCOPE

    @extend_schema(
        operation_id="tracks_import",
        summary="Create or update tracks by URI, all or nothing (tenant admins; API clients with `tracks:write`)",
        request=TrackImportInputSerializer,
        responses={200: TrackImportOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=TRACK_TAGS,
    )
    def post(self, request):
        serializer = TrackImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = track_import(actor=self.principal, tracks=serializer.validated_data["tracks"], context=self.context())
        return Response(TrackImportOutputSerializer(result).data)


# --- Playlists ------------------------------------------------------------------

PLAYLIST_TAGS = ["playlists"]

_EDIT_CONFLICT = {
    409: OpenApiResponse(
        ErrorResponseSerializer,
        description=(
            "`resync_required`: the base revision is older than the retained history or the transform window; "
            "nothing was applied, details.snapshot is the playlist now (reload and redo the edit). "
            "`conflict`: the playlist is full (details.max_items)."
        ),
    ),
}
_SHARING_CONFLICT = {
    409: OpenApiResponse(
        ErrorResponseSerializer, description="`conflict`: the owner's role cannot change, nor can the owner be removed."
    ),
}
_IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "The edit's client op id when the body has none. A retry with the same key gets the first answer "
        "(`duplicate: true`); without a body id or this header the server picks a fresh id, so a retry is a new edit."
    ),
)


def _client_op_id(request, given: str | None) -> str:
    """The body's client op id, else the ``Idempotency-Key`` header, else a fresh
    one: only the first two make a retry safe, a fresh id makes it a new edit."""
    return given or request.headers.get("Idempotency-Key") or str(uuid.uuid4())


def _end_index(*, playlist: Playlist, revision: int) -> int:
    """The index of "at the end" in the list as of ``revision``.

    Read from the snapshot and op log up to ``revision``, not from the item rows,
    which may already hold a later commit: an index counted there could be out
    of range at ``revision``. The service's transform then keeps the item after
    whatever others appended since, so it still lands at the end."""
    try:
        return len(playlist_state_at(playlist=playlist, revision=revision).items)
    except RevisionGone:
        if revision > playlist.revision:
            # Refused here: the revision could exist by the time the service locks
            # the row, and the index guessed now would then be taken at its word.
            raise Invalid("base_revision is ahead of the playlist.", field="base_revision") from None
        # Older than the retained history: the service answers resync_required,
        # whatever the index.
        return 0


class PlaylistView(TenantScopedMixin, APIView):
    """Base of the playlist views: users of any tenant role (each playlist's own
    roles are the services' to check); API clients with ``playlists:read`` read
    (GET) and never write."""

    required_role = Role.MEMBER
    required_scope = {"get": ApiScope.PLAYLISTS_READ, "head": ApiScope.PLAYLISTS_READ}

    def context(self) -> RequestContext:
        return RequestContext.from_request(self.request)

    def snapshot_data(self, *, playlist: Playlist, role: str) -> dict:
        return PlaylistDetailOutputSerializer({**playlist_snapshot(playlist=playlist), "role": role}).data

    def editable(self, playlist_id: int) -> Playlist:
        """The playlist, for an item convenience to read its current revision (the
        service checks the role again, under its lock)."""
        return playlist_access(actor=self.principal, playlist_id=playlist_id, minimum=CollaboratorRole.EDITOR).playlist

    def apply(self, *, playlist_id: int, base_revision: int, op: dict, client_op_id: str | None) -> Response:
        result = playlist_apply_op(
            actor=self.principal,
            playlist_id=playlist_id,
            base_revision=base_revision,
            op=op,
            client_op_id=_client_op_id(self.request, client_op_id),
        )
        return Response(OpResultOutputSerializer(result.as_dict()).data)


class PlaylistListCreateView(PlaylistView, GenericAPIView):
    """The playlists the caller may see, and creating one."""

    pagination_class = DefaultCursorPagination
    serializer_class = PlaylistListOutputSerializer
    queryset = Playlist.objects.none()

    @extend_schema(
        operation_id="playlists_list",
        summary="Playlists the caller may see, newest first: theirs, shared with them, the tenant's public "
        "and collaborative ones (API clients: all of the tenant's)",
        responses={200: PlaylistListOutputSerializer(many=True), **error_responses(401, 403, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request):
        page = self.paginate_queryset(playlists_for_user(actor=self.principal))
        return self.get_paginated_response(PlaylistListOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="playlists_create",
        summary="Create an empty playlist (revision 0) owned by the caller",
        request=PlaylistCreateInputSerializer,
        responses={201: PlaylistDetailOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request):
        serializer = PlaylistCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        playlist = playlist_create(actor=self.principal, **serializer.validated_data)
        return Response(
            self.snapshot_data(playlist=playlist, role=CollaboratorRole.OWNER), status=status.HTTP_201_CREATED
        )


class PlaylistDetailView(PlaylistView):
    @extend_schema(
        operation_id="playlists_retrieve",
        summary="The playlist now: its revision, title, description, visibility, owner, the caller's role "
        "and its items with their tracks",
        responses={200: PlaylistDetailOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        access = playlist_access(actor=self.principal, playlist_id=playlist_id)
        return Response(self.snapshot_data(playlist=access.playlist, role=access.role))

    @extend_schema(
        operation_id="playlists_visibility_set",
        summary="Change the visibility (owner). Title and description are content: they change through an "
        "`update` op (POST …/ops/) so every change is a revision in history; sending them here is `400`",
        request=PlaylistVisibilityInputSerializer,
        responses={200: PlaylistDetailOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def patch(self, request, playlist_id: int):
        serializer = PlaylistVisibilityInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        playlist = playlist_visibility_set(
            actor=self.principal,
            playlist_id=playlist_id,
            visibility=serializer.validated_data["visibility"],
            context=self.context(),
        )
        return Response(self.snapshot_data(playlist=playlist, role=CollaboratorRole.OWNER))

    @extend_schema(
        operation_id="playlists_delete",
        summary="Delete the playlist with its items, history, collaborators and links (owner); audited",
        responses={204: None, **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def delete(self, request, playlist_id: int):
        playlist_delete(actor=self.principal, playlist_id=playlist_id, context=self.context())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlaylistOpView(PlaylistView):
    @extend_schema(
        operation_id="playlists_ops_apply",
        summary="Apply one edit (insert, remove, move, update, or a batch of them) written against "
        "`base_revision`: the WebSocket `playlist.op` over REST (owners and editors)",
        request=PlaylistOpInputSerializer,
        parameters=[_IDEMPOTENCY_KEY],
        responses={200: OpResultOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_EDIT_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int):
        serializer = PlaylistOpInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return self.apply(
            playlist_id=playlist_id,
            base_revision=data["base_revision"],
            op=data["op"],
            client_op_id=data.get("client_op_id"),
        )


class PlaylistItemListAddView(PlaylistView):
    @extend_schema(
        operation_id="playlists_items_list",
        summary="The playlist's items in order, each with its track, and the revision they are at",
        responses={200: PlaylistItemsOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        # Not paginated: positions shift with every edit, so pages of one list
        # could come from different revisions; the list is bounded by PLAYLIST_MAX_ITEMS.
        playlist = playlist_access(actor=self.principal, playlist_id=playlist_id).playlist
        snapshot = playlist_snapshot(playlist=playlist)
        return Response(PlaylistItemsOutputSerializer(snapshot).data)

    @extend_schema(
        operation_id="playlists_items_add",
        summary="Add a track (an `insert` op): at `index` of the list at `base_revision`, by default at the "
        "end of the current list",
        request=ItemAddInputSerializer,
        parameters=[_IDEMPOTENCY_KEY],
        responses={200: OpResultOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_EDIT_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int):
        serializer = ItemAddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        base_revision, index = data.get("base_revision"), data.get("index")
        if base_revision is None or index is None:
            playlist = self.editable(playlist_id)
            base_revision = playlist.revision if base_revision is None else base_revision
            index = _end_index(playlist=playlist, revision=base_revision) if index is None else index
        return self.apply(
            playlist_id=playlist_id,
            base_revision=base_revision,
            op={"op": "insert", "index": index, "track": data["track"]},
            client_op_id=data.get("client_op_id"),
        )


class PlaylistItemRemoveView(PlaylistView):
    @extend_schema(
        operation_id="playlists_items_remove",
        summary="Remove an item (a `remove` op); an item already gone is a no-op (`committed: false`)",
        parameters=[_IDEMPOTENCY_KEY],
        responses={200: OpResultOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_EDIT_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def delete(self, request, playlist_id: int, item_id: uuid.UUID):
        playlist = self.editable(playlist_id)
        return self.apply(
            playlist_id=playlist_id,
            base_revision=playlist.revision,
            op={"op": "remove", "item_id": str(item_id)},
            client_op_id=None,
        )


class PlaylistItemMoveView(PlaylistView):
    @extend_schema(
        operation_id="playlists_items_move",
        summary="Move an item (a `move` op) to `index` of the list at `base_revision` (default: the current "
        "one); a move of an item someone removed is dropped",
        request=ItemMoveInputSerializer,
        parameters=[_IDEMPOTENCY_KEY],
        responses={200: OpResultOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_EDIT_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int, item_id: uuid.UUID):
        serializer = ItemMoveInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        base_revision = data["base_revision"] if "base_revision" in data else self.editable(playlist_id).revision
        return self.apply(
            playlist_id=playlist_id,
            base_revision=base_revision,
            op={"op": "move", "item_id": str(item_id), "index": data["index"]},
            client_op_id=data.get("client_op_id"),
        )


class RevisionPagination(DefaultCursorPagination):
    """Newest first by revision: unique within a playlist, so cursors are exact."""

    ordering = "-revision"


class PlaylistRevisionListView(PlaylistView, GenericAPIView):
    pagination_class = RevisionPagination
    serializer_class = PlaylistRevisionOutputSerializer
    queryset = PlaylistOp.objects.none()

    @extend_schema(
        operation_id="playlists_revisions_list",
        summary="The playlist's history: each committed revision with its author, its ops and a summary, "
        "newest first (as far back as the retained history goes)",
        responses={200: PlaylistRevisionOutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        playlist = playlist_access(actor=self.principal, playlist_id=playlist_id).playlist
        page = self.paginate_queryset(playlist_revisions(playlist=playlist))
        return self.get_paginated_response(PlaylistRevisionOutputSerializer(page, many=True).data)


class PlaylistRevisionDetailView(PlaylistView):
    @extend_schema(
        operation_id="playlists_revisions_retrieve",
        summary="The playlist as of a revision (title, description, items with tracks); a revision older "
        "than the retained history, or not reached yet, is `404`",
        responses={200: PlaylistStateOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int, revision: int):
        playlist = playlist_access(actor=self.principal, playlist_id=playlist_id).playlist
        try:
            state = playlist_state_at(playlist=playlist, revision=revision)
        except RevisionGone:
            raise NotFound("That revision is not in the playlist's history.") from None
        return Response(PlaylistStateOutputSerializer(state_payload(playlist=playlist, state=state)).data)


class PlaylistRevertView(PlaylistView):
    @extend_schema(
        operation_id="playlists_revert",
        summary="Make the playlist what it was at `revision`, as a new revision of kind `revert` (owners and "
        "editors); the WebSocket `playlist.revert` over REST",
        request=RevertInputSerializer,
        parameters=[_IDEMPOTENCY_KEY],
        responses={200: OpResultOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_EDIT_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int):
        serializer = RevertInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = playlist_revert(
            actor=self.principal,
            playlist_id=playlist_id,
            revision=data["revision"],
            client_op_id=_client_op_id(request, data.get("client_op_id")),
        )
        return Response(OpResultOutputSerializer(result.as_dict()).data)


class CollaboratorPagination(DefaultCursorPagination):
    """The owner first, then in the order people were added."""

    ordering = "id"


class PlaylistCollaboratorListAddView(PlaylistView, GenericAPIView):
    pagination_class = CollaboratorPagination
    serializer_class = CollaboratorOutputSerializer
    queryset = PlaylistCollaborator.objects.none()

    @extend_schema(
        operation_id="playlists_collaborators_list",
        summary="Who is on the playlist, the owner first (anyone who may see the playlist)",
        responses={200: CollaboratorOutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        page = self.paginate_queryset(playlist_collaborators(actor=self.principal, playlist_id=playlist_id))
        return self.get_paginated_response(CollaboratorOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="playlists_collaborators_add",
        summary="Make a user of the tenant an editor or viewer (owner); for someone already on the playlist "
        "this sets their role, as PUT does; audited",
        request=CollaboratorAddInputSerializer,
        responses={
            201: CollaboratorOutputSerializer,
            **error_responses(400, 401, 403, 404, 429),
            **_SHARING_CONFLICT,
        },
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int):
        serializer = CollaboratorAddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        collaborator = collaborator_set(
            actor=self.principal,
            playlist_id=playlist_id,
            user_id=serializer.validated_data["user"],
            role=serializer.validated_data["role"],
            context=self.context(),
        )
        return Response(CollaboratorOutputSerializer(collaborator).data, status=status.HTTP_201_CREATED)


class PlaylistCollaboratorDetailView(PlaylistView):
    @extend_schema(
        operation_id="playlists_collaborators_set",
        summary="Set a user's role, editor or viewer, adding them if needed (owner); audited",
        request=CollaboratorRoleInputSerializer,
        responses={200: CollaboratorOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_SHARING_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def put(self, request, playlist_id: int, user_id: int):
        serializer = CollaboratorRoleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        collaborator = collaborator_set(
            actor=self.principal,
            playlist_id=playlist_id,
            user_id=user_id,
            role=serializer.validated_data["role"],
            context=self.context(),
        )
        return Response(CollaboratorOutputSerializer(collaborator).data)

    @extend_schema(
        operation_id="playlists_collaborators_remove",
        summary="Remove a collaborator (owner), or leave the playlist (a collaborator, with their own id); "
        "their live streams of it end; audited",
        responses={204: None, **error_responses(401, 403, 404, 429), **_SHARING_CONFLICT},
        tags=PLAYLIST_TAGS,
    )
    def delete(self, request, playlist_id: int, user_id: int):
        collaborator_remove(actor=self.principal, playlist_id=playlist_id, user_id=user_id, context=self.context())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlaylistShareLinkListCreateView(PlaylistView, GenericAPIView):
    # Links are the owner's business: closed to API clients altogether.
    required_scope = None
    pagination_class = DefaultCursorPagination
    serializer_class = ShareLinkOutputSerializer
    queryset = PlaylistShareLink.objects.none()

    @extend_schema(
        operation_id="playlists_share_links_list",
        summary="The playlist's share links, newest first, revoked and expired ones included (owner); tokens "
        "are never shown again, only `token_prefix`",
        responses={200: ShareLinkOutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        page = self.paginate_queryset(playlist_share_links(actor=self.principal, playlist_id=playlist_id))
        return self.get_paginated_response(ShareLinkOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="playlists_share_links_create",
        summary="A link granting editor or viewer until `expires_at` (owner); the answer carries the token, "
        "shown this once; audited",
        request=ShareLinkCreateInputSerializer,
        responses={201: ShareLinkCreatedOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request, playlist_id: int):
        serializer = ShareLinkCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = share_link_create(
            actor=self.principal, playlist_id=playlist_id, context=self.context(), **serializer.validated_data
        )
        body = ShareLinkCreatedOutputSerializer(created.link, context={"token": created.token}).data
        return Response(body, status=status.HTTP_201_CREATED)


class PlaylistShareLinkRevokeView(PlaylistView):
    required_scope = None

    @extend_schema(
        operation_id="playlists_share_links_revoke",
        summary="Revoke a link (owner; idempotent); collaborators it made keep their role; audited",
        responses={200: ShareLinkOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def delete(self, request, playlist_id: int, link_id: int):
        link = share_link_revoke(actor=self.principal, playlist_id=playlist_id, link_id=link_id, context=self.context())
        return Response(ShareLinkOutputSerializer(link).data)


class ShareLinkRedeemView(PlaylistView):
    required_scope = None

    @extend_schema(
        operation_id="share_links_redeem",
        summary="Join a playlist of the tenant with a link's token: the caller becomes a collaborator with "
        "the link's role (a higher role they had is kept); an unknown, revoked or expired token is `404`",
        request=ShareLinkRedeemInputSerializer,
        responses={200: ShareLinkRedeemOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def post(self, request):
        serializer = ShareLinkRedeemInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        collaborator = share_link_redeem(
            actor=self.principal, token=serializer.validated_data["token"], context=self.context()
        )
        return Response(ShareLinkRedeemOutputSerializer(collaborator).data)


class PlaylistSuggestionsView(PlaylistView):
    @extend_schema(
        operation_id="playlists_suggestions",
        summary="Tracks to add, best first, each with why (anyone who may see the playlist); the WebSocket "
        "`playlist.suggest` over REST",
        parameters=[
            OpenApiParameter(
                "limit", int, required=False, description="How many (1..SUGGESTION_MAX_RESULTS, 50 by default)."
            ),
        ],
        responses={200: PlaylistSuggestionsOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=PLAYLIST_TAGS,
    )
    def get(self, request, playlist_id: int):
        serializer = SuggestionsQueryInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        suggestions = playlist_suggestions(
            actor=self.principal, playlist_id=playlist_id, limit=serializer.validated_data.get("limit")
        )
        return Response(PlaylistSuggestionsOutputSerializer({"playlist": playlist_id, "suggestions": suggestions}).data)
