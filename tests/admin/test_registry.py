"""Every registered admin screen renders, uses the audited base, and does not query per row."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.client import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from spotify_agent.admin import AuditedModelAdmin

from .conftest import make_rows

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"accounts", "audit", "chat", "playlists", "notifications", "monitoring", "realtime", "auth"}


def _project_admins():
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
    ]


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_project_admin_is_audited():
    admins = _project_admins()
    assert len(admins) >= 11
    for model, model_admin in admins:
        assert isinstance(model_admin, AuditedModelAdmin), model._meta.label


def test_every_changelist_add_and_change_page_renders(superuser_client, superuser):
    rows = make_rows(tag="one")
    request = RequestFactory().get("/admin/")
    request.user = superuser

    for model, model_admin in admin.site._registry.items():
        label = model._meta.label
        assert model in rows, f"make_rows() has no row for {label}: add one"

        response = superuser_client.get(_url(model, "changelist"))
        assert response.status_code == 200, label
        assert response.context["cl"].result_count >= 1, label

        response = superuser_client.get(_url(model, "add"))
        expected = 200 if model_admin.has_add_permission(request) else 403
        assert response.status_code == expected, label

        response = superuser_client.get(_url(model, "change", rows[model].pk))
        assert response.status_code == 200, label


def test_changelists_do_not_query_per_row(superuser_client):
    make_rows(tag="one")

    def queries_per_changelist() -> dict[str, int]:
        counts = {}
        for model, _ in _project_admins():
            with CaptureQueriesContext(connection) as captured:
                assert superuser_client.get(_url(model, "changelist")).status_code == 200
            counts[model._meta.label] = len(captured)
        return counts

    before = queries_per_changelist()
    make_rows(tag="two")
    after = queries_per_changelist()

    assert after == before
