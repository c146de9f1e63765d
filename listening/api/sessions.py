"""REST adapters of listening sessions: the listing, a session's state, its life
(create, join, leave, end, invitations, visibility and radio), playback
commands, the queue, the play history and next-track recommendations.

Users of any tenant role read and write; API clients with ``listening:read``
read (the GET endpoints) every session of their tenant, with no role of their
own. Each endpoint calls the service or selector the WebSocket ``session.*``
and ``playback.*`` handlers call (``listening.services``,
``listening.selectors``), so both follow the same rules and answer the same
errors: a playback command that lost the race is ``409 conflict`` with the
state now in ``details.state``, as over the WebSocket. The queue is read here
and edited through the playlists API (``POST /playlists/{queue}/ops/``), the
playlist engine's one door. docs/api.md, "Listening sessions".
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import ApiScope, Role
from playlists.api.serializers import PlaylistItemOutputSerializer, PlaylistTrackOutputSerializer
from playlists.api.serializers import SuggestionOutputSerializer as TrackSuggestionOutputSerializer
from playlists.models import TrackPlay
from spotify_agent.api.pagination import DefaultCursorPagination
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin

from ..constants import PlaybackAction, SessionMode, SessionVisibility
from ..models import ListeningSession
from ..selectors import (
    SESSION_SUGGESTIONS,
    session_listed_payload,
    session_plays,
    session_queue,
    session_recommendations,
    session_state,
    sessions_listed,
)
from ..services.playback import playback_command, session_radio_set
from ..services.sessions import (
    session_create,
    session_end,
    session_invite,
    session_join,
    session_leave,
    session_visibility_set,
)

TAGS = ["listening sessions"]

# --- Serializers ------------------------------------------------------------------------------
#
# Inputs check types only; the services check values and name the field. Modes,
# visibilities, roles and actions are plain strings whose values the help text
# lists: other apps' serializers already give the ``mode``, ``visibility``,
# ``role`` and ``action`` enum components their names.


class SessionUserOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class SessionPlaybackOutputSerializer(serializers.Serializer):
    """The playback state (docs/protocol.md, "Listening sessions"), for the schema:
    the answers carry it as the service made it."""

    session = serializers.IntegerField()
    revision = serializers.IntegerField(help_text="Send it as `base_revision` with the next command.")
    track = PlaylistTrackOutputSerializer(allow_null=True)
    position_ms = serializers.IntegerField(help_text="Where the track is at `anchor_ms`.")
    anchor_ms = serializers.IntegerField(help_text="Server clock, Unix ms.")
    playing = serializers.BooleanField()
    rate = serializers.FloatField()
    volume = serializers.IntegerField()
    radio = serializers.BooleanField()
    action = serializers.CharField(help_text="What made this state: a command, `vote_skip`, `advance`, `state`...")
    by = serializers.IntegerField(allow_null=True, help_text="Its author's user id; null for the server.")


@extend_schema_field(SessionPlaybackOutputSerializer)
class PlaybackStateField(serializers.JSONField):
    """The state as sent (every field the service puts in), documented as ``SessionPlaybackOutput``."""


class SessionMemberOutputSerializer(serializers.Serializer):
    user = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField(help_text="`host`, `co_dj` or `listener`.")


class SessionStateOutputSerializer(serializers.Serializer):
    """A session as ``session.join`` acknowledges it."""

    session = serializers.IntegerField()
    title = serializers.CharField()
    mode = serializers.CharField(help_text=f"One of {', '.join(SessionMode.values)}.")
    visibility = serializers.CharField(help_text=f"One of {', '.join(SessionVisibility.values)}.")
    vote_skip_threshold = serializers.FloatField()
    status = serializers.CharField(help_text="`live` or `ended`.")
    host = SessionUserOutputSerializer()
    queue = serializers.IntegerField(help_text="The queue's playlist id (edit it with the playlists API).")
    room = serializers.CharField(help_text="The chat room's id.")
    role = serializers.CharField(allow_null=True, help_text="The caller's role if present; null for API clients.")
    muted = serializers.BooleanField()
    audience = serializers.IntegerField(help_text="Members present.")
    members = SessionMemberOutputSerializer(many=True, help_text="The first 100 present, longest present first.")
    playback = PlaybackStateField()
    server_time_ms = serializers.IntegerField(help_text="The server's clock (Unix ms) when the answer was made.")


class SessionListedOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    mode = serializers.CharField(help_text=f"One of {', '.join(SessionMode.values)}.")
    visibility = serializers.CharField(help_text=f"One of {', '.join(SessionVisibility.values)}.")
    host = SessionUserOutputSerializer()
    audience = serializers.IntegerField(help_text="Members present.")
    track = PlaylistTrackOutputSerializer(allow_null=True, help_text="What plays now; null when nothing does.")
    playing = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class SessionCreateInputSerializer(serializers.Serializer):
    title = serializers.CharField(allow_blank=True, trim_whitespace=False, help_text="1..200 characters, trimmed.")
    mode = serializers.CharField(required=False, help_text="`group` (default) or `dj`.")
    visibility = serializers.CharField(required=False, help_text="`public` (default) or `invite`.")
    vote_skip_threshold = serializers.FloatField(
        required=False, help_text="The share of present members whose votes skip a track, above 0 and at most 1 (0.5)."
    )


class SessionUpdateInputSerializer(serializers.Serializer):
    visibility = serializers.CharField(required=False, help_text="`public` or `invite` (the host).")
    radio = serializers.BooleanField(required=False, help_text="Radio mode (whoever controls playback).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        others = sorted(set(self.initial_data) - {"visibility", "radio"})
        if others:
            raise serializers.ValidationError({field: ["Only visibility and radio change here."] for field in others})
        if not attrs:
            raise serializers.ValidationError({"visibility": ["Send visibility, radio or both."]})
        return attrs


class SessionInviteInputSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="An active user of the tenant.")


class SessionInviteOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField(source="session_id")
    user = serializers.IntegerField(source="user_id")
    invited_by = serializers.IntegerField(source="invited_by_id")
    created_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(
        allow_null=True, help_text="When the invitee first joined; null until then."
    )


class SessionPlaybackInputSerializer(serializers.Serializer):
    action = serializers.CharField(help_text=f"One of {', '.join(PlaybackAction.values)}.")
    base_revision = serializers.IntegerField(
        help_text="The playback state's `revision` the command was written against."
    )
    position_ms = serializers.IntegerField(required=False, help_text="`seek` (required) and `play` (optional).")
    volume = serializers.IntegerField(required=False, help_text="`volume`: 0..100.")


class SessionQueueOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    queue = serializers.IntegerField(help_text="The queue's playlist id: edits go to `POST /playlists/{queue}/ops/`.")
    revision = serializers.IntegerField(help_text="The queue playlist's revision these items are at.")
    items = PlaylistItemOutputSerializer(many=True, help_text="In play order.")


class SessionPlayOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user = SessionUserOutputSerializer()
    track = PlaylistTrackOutputSerializer()
    played_at = serializers.DateTimeField(help_text="When the member started hearing it.")
    listened_ms = serializers.IntegerField(allow_null=True, help_text="How far the session got into the track.")


class SessionRecommendationsQueryInputSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False,
        help_text=f"How many, clamped to 1..SUGGESTION_MAX_RESULTS (50); {SESSION_SUGGESTIONS} by default.",
    )


class SessionRecommendationsOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    suggestions = TrackSuggestionOutputSerializer(many=True, help_text="Best first.")


def _play_payload(play: TrackPlay) -> dict[str, Any]:
    track = play.track
    return {
        "id": play.pk,
        "user": {"id": play.user_id, "username": play.user.get_username()},
        "track": {field: getattr(track, field) for field in ("id", "uri", "title", "artist", "album", "duration_ms")},
        "played_at": play.played_at,
        "listened_ms": play.listened_ms,
    }


# --- Views ------------------------------------------------------------------------------------

_SESSION_CONFLICT = {
    409: OpenApiResponse(ErrorResponseSerializer, description="`conflict`: the session has ended."),
}


class SessionView(TenantScopedMixin, APIView):
    """Base of the session views: users of any role; API clients with
    ``listening:read`` read (GET) and never write."""

    required_role = Role.MEMBER
    required_scope = {"get": ApiScope.LISTENING_READ, "head": ApiScope.LISTENING_READ}

    def state(self, session_id: int) -> dict[str, Any]:
        return SessionStateOutputSerializer(session_state(actor=self.principal, session_id=session_id)).data


class SessionListPagination(DefaultCursorPagination):
    """The most listened first, then the newest (``sessions_listed``)."""

    ordering = ("-audience", "-created_at", "-id")


class SessionListCreateView(SessionView, GenericAPIView):
    pagination_class = SessionListPagination
    serializer_class = SessionListedOutputSerializer
    queryset = ListeningSession.objects.none()

    @extend_schema(
        operation_id="listening_sessions_list",
        summary="Live sessions of the tenant the caller may join: public ones and invite-only ones they were "
        "invited to or were in (API clients: every live one); the largest audience first, then the newest",
        responses={200: SessionListedOutputSerializer(many=True), **error_responses(401, 403, 429)},
        tags=TAGS,
    )
    def get(self, request):
        page = self.paginate_queryset(sessions_listed(actor=self.principal))
        return self.get_paginated_response(
            SessionListedOutputSerializer([session_listed_payload(session) for session in page], many=True).data
        )

    @extend_schema(
        operation_id="listening_sessions_create",
        summary="Create a live session hosted by the caller, with its queue and chat room; the WebSocket "
        "`session.create` over REST",
        request=SessionCreateInputSerializer,
        responses={201: SessionStateOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=TAGS,
    )
    def post(self, request):
        serializer = SessionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_create(actor=self.principal, **serializer.validated_data)
        return Response(self.state(session.pk), status=status.HTTP_201_CREATED)


class SessionDetailView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_retrieve",
        summary="The session as `session.join` answers it: who is there, the caller's role and the playback "
        "state with the server's time",
        responses={200: SessionStateOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        return Response(self.state(session_id))

    @extend_schema(
        operation_id="listening_sessions_update",
        summary="Change the visibility (the host) and radio mode (whoever controls playback), all or nothing",
        request=SessionUpdateInputSerializer,
        responses={200: SessionStateOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_SESSION_CONFLICT},
        tags=TAGS,
    )
    def patch(self, request, session_id: int):
        serializer = SessionUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # One transaction: a refused half undoes the other (and its event).
        with transaction.atomic():
            if "radio" in data:
                session_radio_set(actor=self.principal, session_id=session_id, on=data["radio"])
            if "visibility" in data:
                session_visibility_set(actor=self.principal, session_id=session_id, visibility=data["visibility"])
        return Response(self.state(session_id))


class SessionJoinView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_join",
        summary="Join the session (idempotent); an invite-only one admits its host, invitees and past members",
        request=None,
        responses={
            200: SessionStateOutputSerializer,
            **error_responses(401, 403, 404, 429),
            409: OpenApiResponse(
                ErrorResponseSerializer,
                description="`conflict`: the session has ended, or is full (details.audience_limit).",
            ),
        },
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        session_join(actor=self.principal, session_id=session_id)
        return Response(self.state(session_id))


class SessionLeaveView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_leave",
        summary="Leave the session; a leaving host hands off, and the last one out ends it",
        request=None,
        responses={204: None, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        session_leave(actor=self.principal, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionEndView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_end",
        summary="End the session (the host): playback stops, members are let go, history stays",
        request=None,
        responses={200: SessionStateOutputSerializer, **error_responses(401, 403, 404, 429), **_SESSION_CONFLICT},
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        session_end(actor=self.principal, session_id=session_id)
        return Response(self.state(session_id))


class SessionInviteView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_invite",
        summary="Invite a user of the tenant (the host and co-DJs; any member in group mode): `201` the "
        "invitation, `200` if it existed (nothing sent twice); the invitee's sockets get `session.invited`",
        request=SessionInviteInputSerializer,
        responses={
            200: SessionInviteOutputSerializer,
            201: SessionInviteOutputSerializer,
            **error_responses(400, 401, 403, 404, 429),
            409: OpenApiResponse(
                ErrorResponseSerializer,
                description="`conflict`: the session has ended, the host removed that user, or the session sent "
                "all the invitations it may (details.max_invites).",
            ),
        },
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        serializer = SessionInviteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = session_invite(actor=self.principal, session_id=session_id, user_id=serializer.validated_data["user"])
        answer = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(SessionInviteOutputSerializer(result.invite).data, status=answer)


class SessionPlaybackView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_playback",
        summary="A playback command written against `base_revision` (whoever controls playback); the "
        "WebSocket `playback.<action>` over REST. Answers the new state",
        request=SessionPlaybackInputSerializer,
        responses={
            200: SessionPlaybackOutputSerializer,
            **error_responses(400, 401, 403, 404, 429),
            409: OpenApiResponse(
                ErrorResponseSerializer,
                description="`conflict`: another command was applied since `base_revision` (details.state is the "
                "state now: redo the command on it), the queue is empty, nothing plays, or the session has ended.",
            ),
        },
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        serializer = SessionPlaybackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        state = playback_command(
            actor=self.principal,
            session_id=session_id,
            action=data["action"],
            base_revision=data["base_revision"],
            position_ms=data.get("position_ms"),
            volume=data.get("volume"),
        )
        return Response(state)


class SessionQueueView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_queue",
        summary="The queue's items in play order, each with its track (not paginated: at most "
        "PLAYLIST_MAX_ITEMS). Edit it with `POST /playlists/{queue}/ops/`",
        responses={200: SessionQueueOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        return Response(SessionQueueOutputSerializer(session_queue(actor=self.principal, session_id=session_id)).data)


class SessionPlaysView(SessionView, GenericAPIView):
    pagination_class = DefaultCursorPagination
    serializer_class = SessionPlayOutputSerializer
    queryset = TrackPlay.objects.none()

    @extend_schema(
        operation_id="listening_sessions_plays",
        summary="The session's play history, newest first: one row per member present when a track left",
        responses={200: SessionPlayOutputSerializer(many=True), **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        page = self.paginate_queryset(session_plays(actor=self.principal, session_id=session_id))
        return self.get_paginated_response(
            SessionPlayOutputSerializer([_play_payload(play) for play in page], many=True).data
        )


class SessionRecommendationsView(SessionView):
    @extend_schema(
        operation_id="listening_sessions_recommendations",
        summary="Tracks to play next, best first, each with why (present members; API clients); none queued, "
        "playing or played in the session. The WebSocket `session.suggestions` over REST",
        parameters=[
            OpenApiParameter(
                "limit",
                int,
                required=False,
                description=f"How many (1..SUGGESTION_MAX_RESULTS, {SESSION_SUGGESTIONS} by default).",
            ),
        ],
        responses={
            200: SessionRecommendationsOutputSerializer,
            **error_responses(400, 401, 403, 404, 429),
            **_SESSION_CONFLICT,
        },
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        serializer = SessionRecommendationsQueryInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        suggestions = session_recommendations(
            actor=self.principal, session_id=session_id, limit=serializer.validated_data.get("limit")
        )
        return Response(
            SessionRecommendationsOutputSerializer({"session": session_id, "suggestions": suggestions}).data
        )


urlpatterns = [
    path("sessions/", SessionListCreateView.as_view(), name="sessions"),
    path("sessions/<int:session_id>/", SessionDetailView.as_view(), name="session"),
    path("sessions/<int:session_id>/join/", SessionJoinView.as_view(), name="session-join"),
    path("sessions/<int:session_id>/leave/", SessionLeaveView.as_view(), name="session-leave"),
    path("sessions/<int:session_id>/end/", SessionEndView.as_view(), name="session-end"),
    path("sessions/<int:session_id>/invites/", SessionInviteView.as_view(), name="session-invites"),
    path("sessions/<int:session_id>/playback/", SessionPlaybackView.as_view(), name="session-playback"),
    path("sessions/<int:session_id>/queue/", SessionQueueView.as_view(), name="session-queue"),
    path("sessions/<int:session_id>/plays/", SessionPlaysView.as_view(), name="session-plays"),
    path(
        "sessions/<int:session_id>/recommendations/",
        SessionRecommendationsView.as_view(),
        name="session-recommendations",
    ),
]
