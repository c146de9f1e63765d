"""Notification templates: finding the row for a user and rendering it.

A ``NotificationTemplate`` is Django template syntax kept in the database
(staff edit it in the admin), per key, channel (blank: any) and locale, for
the platform (no tenant) or one tenant. ``template_render`` picks the row by
the fallback chain below and renders subject, text and HTML with the Django
template engine, from strings:

1. the user's locale, then the tenant's ``locale``, then ``en`` (``fr-CA``
   also tries ``fr``);
2. within a locale, the tenant's row before the platform's;
3. within those, the channel's own row before a channel-blank one.

Language comes first: a French reader is better served by the platform's
French text than by the tenant's English one. The engine is a private one
with no loaders and only the built-in tags and filters, so a template cannot
include files or load tag libraries; HTML is autoescaped, subject and text
are not (they are not HTML). Contexts are JSON objects (``sending`` checks).

``templates_load`` reads the shipped platform templates
(``notifications/data/templates/*.json``) into the table, idempotently; the
``notifications_templates_load`` command and the demo seeding call it.
The project's own wording (errors users see, digest titles) is translated
with gettext (``notifications/locale``), not with these rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.template import Context, Engine, TemplateDoesNotExist, TemplateSyntaxError
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from spotify_agent.errors import Invalid

from .constants import TITLE_MAX_LENGTH

FALLBACK_LOCALE = "en"
TEMPLATES_DIR = Path(__file__).resolve().parent / "data" / "templates"

# No loaders (no {% include %} or {% extends %} of files), no libraries beyond
# the built-ins: what staff type in the admin can only format its context.
_HTML_ENGINE = Engine(autoescape=True, libraries={}, loaders=[])
_TEXT_ENGINE = Engine(autoescape=False, libraries={}, loaders=[])


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str

    def __iter__(self):
        return iter((self.subject, self.text, self.html))


def locale_chain(*locales: str | None) -> list[str]:
    """The locales to try, in order, lower-cased, each followed by its language
    (``fr-ca`` then ``fr``), ending with ``en``; no repeats."""
    chain: list[str] = []
    for locale in (*locales, FALLBACK_LOCALE):
        if not locale:
            continue
        code = locale.strip().lower().replace("_", "-")
        for candidate in (code, code.split("-")[0]):
            if candidate and candidate not in chain:
                chain.append(candidate)
    return chain


def template_candidates(*, tenant_id: int | None, key: str) -> list:
    """Every row that may serve ``key`` for the tenant: theirs and the platform's (one query)."""
    from django.db.models import Q

    from .models import NotificationTemplate

    owner = Q(tenant__isnull=True) | Q(tenant_id=tenant_id) if tenant_id is not None else Q(tenant__isnull=True)
    return list(NotificationTemplate.objects.filter(owner, key=key))


def template_choose(rows: Sequence, *, tenant_id: int | None, channel: str, locales: Sequence[str]):
    """The row the fallback chain picks among ``rows`` (``template_candidates``), or None."""
    by_slot = {}
    for row in rows:
        by_slot.setdefault((row.tenant_id, row.channel, row.locale.strip().lower().replace("_", "-")), row)
    owners = [tenant_id, None] if tenant_id is not None else [None]
    channels = [channel, ""] if channel else [""]
    for locale in locales:
        for owner in owners:
            for slot_channel in channels:
                row = by_slot.get((owner, slot_channel, locale))
                if row is not None:
                    return row
    return None


def compile_check(source: str, *, html: bool = False) -> None:
    """Raise ``TemplateSyntaxError`` when ``source`` does not compile (admin forms use it)."""
    (_HTML_ENGINE if html else _TEXT_ENGINE).from_string(source)


def render_row(row, context: dict[str, Any]) -> Rendered:
    """Render one template row with ``context`` (a JSON object)."""
    try:
        # A Context escapes by default whatever its engine says: say it again here.
        subject = _TEXT_ENGINE.from_string(row.subject).render(Context(context, autoescape=False))
        text = _TEXT_ENGINE.from_string(row.body_text).render(Context(context, autoescape=False))
        html = _HTML_ENGINE.from_string(row.body_html).render(Context(context)) if row.body_html else ""
    except (TemplateSyntaxError, TemplateDoesNotExist) as exc:
        # TemplateDoesNotExist: an {% include %}, which this engine has nothing to load from.
        raise Invalid(
            _("The template %(key)s does not compile: %(error)s") % {"key": row.key, "error": exc},
            field="template_key",
        ) from None
    # A subject is one line of bounded length, whatever the template made of it.
    subject = " ".join(subject.split())[:TITLE_MAX_LENGTH]
    return Rendered(subject=subject, text=text.strip(), html=html.strip())


def template_missing(key: str) -> Invalid:
    return Invalid(_("No template named %(key)s exists.") % {"key": key}, field="template_key")


def template_render(
    *,
    tenant_id: int | None,
    key: str,
    channel: str,
    locale: str | None,
    context: dict[str, Any],
    tenant_locale: str | None = None,
) -> Rendered:
    """Render ``key`` for a user reading ``locale`` on ``channel`` (blank: any).

    ``tenant_locale`` is the tenant's ``locale`` (read from the tenant when not
    given). ``Invalid`` on ``template_key`` when no row of the chain exists.
    Three queries at most; senders that render for many users use
    ``template_candidates`` and ``template_choose`` once per locale instead.
    """
    if tenant_locale is None and tenant_id is not None:
        from accounts.models import Tenant

        tenant_locale = Tenant.objects.filter(pk=tenant_id).values_list("locale", flat=True).first()
    rows = template_candidates(tenant_id=tenant_id, key=key)
    row = template_choose(rows, tenant_id=tenant_id, channel=channel, locales=locale_chain(locale, tenant_locale))
    if row is None:
        raise template_missing(key)
    return render_row(row, context)


def digest_title(*, count: int, locale: str | None) -> str:
    """The title of a digest of ``count`` notifications, in ``locale`` (the project's wording)."""
    with translation.override(locale or FALLBACK_LOCALE):
        return ngettext("%(count)d new notification", "%(count)d new notifications", count) % {"count": count}


# --- Shipped templates ---------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    created: int
    updated: int
    unchanged: int


_FIELDS = ("subject", "body_text", "body_html")


def templates_load(paths: Iterable[Path] | None = None) -> LoadResult:
    """Create or update the platform templates described by JSON files (default:
    every ``notifications/data/templates/*.json``). Idempotent: a row equal to
    its file is left alone. Each file is a list of
    ``{"key", "channel", "locale", "subject", "body_text", "body_html"}``; a
    template that does not compile refuses the file (``ValueError``)."""
    from django.db import transaction

    from .models import NotificationTemplate

    files = sorted(TEMPLATES_DIR.glob("*.json")) if paths is None else list(paths)
    created = updated = unchanged = 0
    with transaction.atomic():
        for path in files:
            for entry in json.loads(Path(path).read_text(encoding="utf-8")):
                values = {name: entry.get(name, "") for name in _FIELDS}
                try:
                    compile_check(values["subject"])
                    compile_check(values["body_text"])
                    compile_check(values["body_html"], html=True)
                except TemplateSyntaxError as exc:
                    raise ValueError(f"{path}: template {entry['key']!r} does not compile: {exc}") from exc
                row, was_created = NotificationTemplate.objects.get_or_create(
                    tenant=None,
                    key=entry["key"],
                    channel=entry.get("channel", ""),
                    locale=entry["locale"],
                    defaults=values,
                )
                if was_created:
                    created += 1
                elif any(getattr(row, name) != value for name, value in values.items()):
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.save()
                    updated += 1
                else:
                    unchanged += 1
    return LoadResult(created=created, updated=updated, unchanged=unchanged)
