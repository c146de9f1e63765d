"""Signal receivers of the accounts app: the audit of session logins.

This is the one place the project uses signals for login auditing, and why:
the Django admin's login view is Django's own, so its successes and failures
are only observable through django.contrib.auth's ``user_logged_in`` /
``user_login_failed`` and axes' ``user_locked_out`` signals.

The REST login (``accounts.services.auth.login_with_password``) audits
explicitly, with more context than a signal carries (the refusal reason, the
tenant check). It also calls ``authenticate()``, which sends
``user_login_failed`` and may make axes send ``user_locked_out``; to record each
attempt once, these receivers ignore requests under /api/. REST never sends
``user_logged_in`` (no session is created), so successes cannot double either.

Receivers only translate the signal into the audit service's arguments. They
are connected in ``AccountsConfig.ready``; docs/api.md lists them.
"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from audit.services import RequestContext
from spotify_agent.api.exceptions import API_PATH_PREFIX

from .services.auth import login_failed_record, login_locked_out_record, login_succeeded_record

_CHANNEL = "admin"


def _is_session_login(request) -> bool:
    """A login through a session view (the admin), not the REST API."""
    return request is not None and not request.path.startswith(API_PATH_PREFIX)


@receiver(user_logged_in, dispatch_uid="accounts.audit_session_login_succeeded")
def audit_session_login_succeeded(sender, request, user, **kwargs):
    if _is_session_login(request):
        login_succeeded_record(user=user, channel=_CHANNEL, context=RequestContext.from_request(request))


@receiver(user_login_failed, dispatch_uid="accounts.audit_session_login_failed")
def audit_session_login_failed(sender, credentials, request=None, **kwargs):
    if _is_session_login(request):
        login_failed_record(
            username=str(credentials.get("username") or ""),
            # axes' own receiver ran first (axes precedes accounts in
            # INSTALLED_APPS) and flagged the request if it is locked out.
            reason="locked_out" if getattr(request, "axes_locked_out", False) else "invalid_credentials",
            channel=_CHANNEL,
            context=RequestContext.from_request(request),
        )


@receiver(user_locked_out, dispatch_uid="accounts.audit_session_login_locked_out")
def audit_session_login_locked_out(sender, request=None, username=None, **kwargs):
    if _is_session_login(request):
        login_locked_out_record(
            username=str(username or ""), channel=_CHANNEL, context=RequestContext.from_request(request)
        )
