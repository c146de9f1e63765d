"""REST adapters of a DJ session's audience: the wait list and requests.

Every write calls the service the WebSocket ``dj.*`` and ``request.*`` handlers
call (``listening.services.djs``, ``listening.services.requests``), and every
read the selector they call (``listening.selectors.waitlist_state``,
``requests_pending``), so both adapters answer the same shapes and errors, and
a change made here reaches the session's sockets (``session.djs``,
``session.requests``) as one made over the WebSocket does. Users of any tenant
role use every endpoint (the session's roles decide the rest); API clients with
``listening:read`` read (GET) only. docs/api.md, "Listening sessions" →
"DJ rotation and requests".
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import ApiScope, Role
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin

from ..constants import DJ_TURN_TRACKS_MAX, REQUESTS_LISTED, REQUESTS_LISTED_MAX, RequestStatus
from ..selectors import requests_pending, waitlist_state
from ..services.djs import waitlist_join, waitlist_leave, waitlist_remove, waitlist_turn_set
from ..services.requests import request_accept, request_create, request_reject, request_vote, request_withdraw

TAGS = ["listening"]

# --- Serializers ------------------------------------------------------------------------------


class AudienceUserOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class AudienceWaitingOutputSerializer(serializers.Serializer):
    user = serializers.IntegerField()
    username = serializers.CharField()


class WaitlistOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    dj = AudienceUserOutputSerializer(allow_null=True, help_text="The member on deck; null when nobody is.")
    waitlist = AudienceWaitingOutputSerializer(many=True, help_text="Who waits, in order; the DJ on deck not included.")
    turn_tracks = serializers.IntegerField(help_text="How many tracks a turn lasts.")
    turn_played = serializers.IntegerField(help_text="Tracks that came on during the current turn.")


class WaitlistTurnInputSerializer(serializers.Serializer):
    # Types only; the service checks the range and names the field.
    tracks = serializers.IntegerField(help_text=f"1..{DJ_TURN_TRACKS_MAX}.")


class AudienceTrackOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    uri = serializers.CharField()
    title = serializers.CharField()
    artist = serializers.CharField()
    album = serializers.CharField()
    duration_ms = serializers.IntegerField()


class TrackRequestOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    track = AudienceTrackOutputSerializer()
    requested_by = AudienceUserOutputSerializer()
    # A plain string: "status" already names other enum components of the schema.
    status = serializers.CharField(help_text=f"One of {', '.join(RequestStatus.values)}.")
    votes = serializers.IntegerField(help_text="Members who voted for it, its author included.")
    voted = serializers.BooleanField(help_text="Whether the caller voted for it.")


class TrackRequestCreatedOutputSerializer(TrackRequestOutputSerializer):
    created = serializers.BooleanField(
        help_text="False when the track had a pending request already: the call was a vote on it."
    )


class TrackRequestListOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    requests = TrackRequestOutputSerializer(many=True, help_text="Pending ones, the most voted first, then the oldest.")


class TrackRequestCreateInputSerializer(serializers.Serializer):
    track = serializers.IntegerField(help_text="A track of the tenant's catalog.")


class TrackRequestListQueryInputSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=REQUESTS_LISTED_MAX, required=False, help_text=f"Default {REQUESTS_LISTED}."
    )


# --- Views ------------------------------------------------------------------------------------

_CONFLICT = {
    409: OpenApiResponse(
        ErrorResponseSerializer,
        description="`conflict`: not a DJ session, the session ended, a limit was reached (details), or the "
        "request was decided already (details.status).",
    ),
}


class AudienceView(TenantScopedMixin, APIView):
    """Base of the audience views: users of any role; API clients with
    ``listening:read`` read (GET) only."""

    required_role = Role.MEMBER
    required_scope = {"get": ApiScope.LISTENING_READ, "head": ApiScope.LISTENING_READ}


class WaitlistView(AudienceView):
    @extend_schema(
        operation_id="sessions_waitlist_retrieve",
        summary="Who is on deck, who waits for a turn and the turn's length (present members; API clients)",
        responses={200: WaitlistOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        return Response(WaitlistOutputSerializer(waitlist_state(actor=self.principal, session_id=session_id)).data)

    @extend_schema(
        operation_id="sessions_waitlist_join",
        summary="Join the wait list (present, unmuted members but the host); with nobody on deck, go on deck. "
        "Idempotent",
        request=None,
        responses={200: WaitlistOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        deck = waitlist_join(actor=self.principal, session_id=session_id)
        return Response(WaitlistOutputSerializer(deck).data)

    @extend_schema(
        operation_id="sessions_waitlist_leave",
        summary="Leave the wait list; the DJ on deck leaving yields the deck to the next. Idempotent",
        responses={200: WaitlistOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def delete(self, request, session_id: int):
        deck = waitlist_leave(actor=self.principal, session_id=session_id)
        return Response(WaitlistOutputSerializer(deck).data)


class WaitlistTurnView(AudienceView):
    @extend_schema(
        operation_id="sessions_waitlist_turn_set",
        summary="Set how many tracks a turn lasts (the host)",
        request=WaitlistTurnInputSerializer,
        responses={200: WaitlistOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def put(self, request, session_id: int):
        serializer = WaitlistTurnInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deck = waitlist_turn_set(actor=self.principal, session_id=session_id, **serializer.validated_data)
        return Response(WaitlistOutputSerializer(deck).data)


class WaitlistMemberView(AudienceView):
    @extend_schema(
        operation_id="sessions_waitlist_remove",
        summary="Take a member off the wait list (the host); the DJ on deck taken off yields to the next",
        responses={200: WaitlistOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def delete(self, request, session_id: int, user_id: int):
        deck = waitlist_remove(actor=self.principal, session_id=session_id, user_id=user_id)
        return Response(WaitlistOutputSerializer(deck).data)


class TrackRequestListCreateView(AudienceView):
    @extend_schema(
        operation_id="sessions_requests_list",
        summary="Pending requests, the most voted first, then the oldest (present members; API clients)",
        parameters=[
            OpenApiParameter("limit", int, required=False, description=f"1..{REQUESTS_LISTED_MAX}."),
        ],
        responses={200: TrackRequestListOutputSerializer, **error_responses(400, 401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def get(self, request, session_id: int):
        query = TrackRequestListQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        listed = requests_pending(actor=self.principal, session_id=session_id, limit=query.validated_data.get("limit"))
        return Response(TrackRequestListOutputSerializer(listed).data)

    @extend_schema(
        operation_id="sessions_requests_create",
        summary="Request a track (present, unmuted members): `201` a new request, `200` a vote on the pending "
        "request for that track",
        request=TrackRequestCreateInputSerializer,
        responses={
            201: TrackRequestCreatedOutputSerializer,
            200: TrackRequestCreatedOutputSerializer,
            **error_responses(400, 401, 403, 404, 429),
            **_CONFLICT,
        },
        tags=TAGS,
    )
    def post(self, request, session_id: int):
        serializer = TrackRequestCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        answer = request_create(
            actor=self.principal, session_id=session_id, track_id=serializer.validated_data["track"]
        )
        code = status.HTTP_201_CREATED if answer["created"] else status.HTTP_200_OK
        return Response(TrackRequestCreatedOutputSerializer(answer).data, status=code)


class TrackRequestDetailView(AudienceView):
    @extend_schema(
        operation_id="sessions_requests_withdraw",
        summary="Withdraw a pending request (its author)",
        responses={200: TrackRequestOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def delete(self, request, session_id: int, request_id: int):
        answer = request_withdraw(actor=self.principal, session_id=session_id, request_id=request_id)
        return Response(TrackRequestOutputSerializer(answer).data)


class TrackRequestVoteView(AudienceView):
    def _vote(self, session_id: int, request_id: int, *, vote: bool) -> Response:
        answer = request_vote(actor=self.principal, session_id=session_id, request_id=request_id, vote=vote)
        return Response(TrackRequestOutputSerializer(answer).data)

    @extend_schema(
        operation_id="sessions_requests_vote",
        summary="Vote for a pending request (present, unmuted members; once each). Idempotent",
        request=None,
        responses={200: TrackRequestOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def post(self, request, session_id: int, request_id: int):
        return self._vote(session_id, request_id, vote=True)

    @extend_schema(
        operation_id="sessions_requests_unvote",
        summary="Take back one's vote for a pending request. Idempotent",
        responses={200: TrackRequestOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def delete(self, request, session_id: int, request_id: int):
        return self._vote(session_id, request_id, vote=False)


class TrackRequestAcceptView(AudienceView):
    @extend_schema(
        operation_id="sessions_requests_accept",
        summary="Accept a pending request: its track joins the end of the queue (the host, co-DJs, the DJ on deck)",
        request=None,
        responses={200: TrackRequestOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def post(self, request, session_id: int, request_id: int):
        answer = request_accept(actor=self.principal, session_id=session_id, request_id=request_id)
        return Response(TrackRequestOutputSerializer(answer).data)


class TrackRequestRejectView(AudienceView):
    @extend_schema(
        operation_id="sessions_requests_reject",
        summary="Reject a pending request (the host, co-DJs, the DJ on deck)",
        request=None,
        responses={200: TrackRequestOutputSerializer, **error_responses(401, 403, 404, 429), **_CONFLICT},
        tags=TAGS,
    )
    def post(self, request, session_id: int, request_id: int):
        answer = request_reject(actor=self.principal, session_id=session_id, request_id=request_id)
        return Response(TrackRequestOutputSerializer(answer).data)


urlpatterns = [
    path("sessions/<int:session_id>/waitlist/", WaitlistView.as_view(), name="session-waitlist"),
    path("sessions/<int:session_id>/waitlist/turn/", WaitlistTurnView.as_view(), name="session-waitlist-turn"),
    path(
        "sessions/<int:session_id>/waitlist/<int:user_id>/",
        WaitlistMemberView.as_view(),
        name="session-waitlist-member",
    ),
    path("sessions/<int:session_id>/requests/", TrackRequestListCreateView.as_view(), name="session-requests"),
    path(
        "sessions/<int:session_id>/requests/<int:request_id>/",
        TrackRequestDetailView.as_view(),
        name="session-request",
    ),
    path(
        "sessions/<int:session_id>/requests/<int:request_id>/vote/",
        TrackRequestVoteView.as_view(),
        name="session-request-vote",
    ),
    path(
        "sessions/<int:session_id>/requests/<int:request_id>/accept/",
        TrackRequestAcceptView.as_view(),
        name="session-request-accept",
    ),
    path(
        "sessions/<int:session_id>/requests/<int:request_id>/reject/",
        TrackRequestRejectView.as_view(),
        name="session-request-reject",
    ),
]
