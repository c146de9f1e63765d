"""Playlists app routes (the track catalog, playlists and sharing), mounted under /api/v1/ by spotify_agent/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    # --- Tracks
    path("tracks/", views.TrackListView.as_view(), name="tracks"),
    path("tracks/import/", views.TrackImportView.as_view(), name="tracks-import"),
    path("tracks/<int:track_id>/", views.TrackDetailView.as_view(), name="track"),
    # --- Playlists
    path("playlists/", views.PlaylistListCreateView.as_view(), name="playlists"),
    path("playlists/<int:playlist_id>/", views.PlaylistDetailView.as_view(), name="playlist"),
    path("playlists/<int:playlist_id>/ops/", views.PlaylistOpView.as_view(), name="playlist-ops"),
    path("playlists/<int:playlist_id>/items/", views.PlaylistItemListAddView.as_view(), name="playlist-items"),
    path(
        "playlists/<int:playlist_id>/items/<uuid:item_id>/",
        views.PlaylistItemRemoveView.as_view(),
        name="playlist-item",
    ),
    path(
        "playlists/<int:playlist_id>/items/<uuid:item_id>/move/",
        views.PlaylistItemMoveView.as_view(),
        name="playlist-item-move",
    ),
    path("playlists/<int:playlist_id>/revisions/", views.PlaylistRevisionListView.as_view(), name="playlist-revisions"),
    path(
        "playlists/<int:playlist_id>/revisions/<int:revision>/",
        views.PlaylistRevisionDetailView.as_view(),
        name="playlist-revision",
    ),
    path("playlists/<int:playlist_id>/revert/", views.PlaylistRevertView.as_view(), name="playlist-revert"),
    path(
        "playlists/<int:playlist_id>/collaborators/",
        views.PlaylistCollaboratorListAddView.as_view(),
        name="playlist-collaborators",
    ),
    path(
        "playlists/<int:playlist_id>/collaborators/<int:user_id>/",
        views.PlaylistCollaboratorDetailView.as_view(),
        name="playlist-collaborator",
    ),
    path(
        "playlists/<int:playlist_id>/share-links/",
        views.PlaylistShareLinkListCreateView.as_view(),
        name="playlist-share-links",
    ),
    path(
        "playlists/<int:playlist_id>/share-links/<int:link_id>/",
        views.PlaylistShareLinkRevokeView.as_view(),
        name="playlist-share-link",
    ),
    path("share-links/redeem/", views.ShareLinkRedeemView.as_view(), name="share-links-redeem"),
    path(
        "playlists/<int:playlist_id>/suggestions/",
        views.PlaylistSuggestionsView.as_view(),
        name="playlist-suggestions",
    ),
]
