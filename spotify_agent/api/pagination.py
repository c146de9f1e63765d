"""Cursor pagination: stable under concurrent inserts, opaque to clients.

Lists answer ``{"next", "previous", "results"}``; ``next``/``previous`` are full
URLs carrying an opaque ``cursor`` (docs/api.md, "Pagination").
"""

from rest_framework.pagination import CursorPagination


class DefaultCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    # Newest first; ``id`` is unique, which a cursor needs to be exact.
    ordering = "-id"
