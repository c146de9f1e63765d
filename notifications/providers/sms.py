"""The SMS channel: Twilio's Messages REST API (or any service with its shape).

``POST {SMS_API_BASE_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json``,
form-encoded ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, HTTP
basic auth with the account SID and auth token; the JSON answer's ``sid`` is
the provider message id. The number is the user's ``NotificationSettings.phone``
(E.164). Without ``SMS_ACCOUNT_SID`` the channel is off: nobody is reachable on it.

Answers: 2xx sent; 429 retryable after its Retry-After; 5xx, timeouts and
connection errors retryable; other 4xx permanent (Twilio 21211 invalid number,
21610 unsubscribed). ``SMS_TIMEOUT`` bounds each socket operation (connect,
each read), so a hung service costs a worker at most a few times that.
Standard library only (urllib): one POST per message needs no more.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import ClassVar

from django.conf import settings

from .base import Message, Provider, ProviderError, SendResult, Target, retry_after_seconds

# Twilio's limit for one message's body (longer ones are refused with 21617).
BODY_MAX_LENGTH = 1600


def sms_body(message: Message) -> str:
    """The title and the content, cut to Twilio's limit."""
    text = f"{message.title}\n{message.body}".strip() if message.body else message.title
    return text if len(text) <= BODY_MAX_LENGTH else text[: BODY_MAX_LENGTH - 1] + "…"


class SmsProvider(Provider):
    channel: ClassVar[str] = "sms"

    def targets(self, user) -> list[Target]:
        from ..models import NotificationSettings

        if not settings.SMS_ACCOUNT_SID or not user.is_active:
            return []
        phone = NotificationSettings.objects.filter(user=user).values_list("phone", flat=True).first()
        return [Target(address=phone)] if phone else []

    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        results: list[SendResult] = []
        error: ProviderError | None = None
        for target in targets:
            try:
                results.append(SendResult(target=target, provider_message_id=self._post(message, target)))
            except ProviderError as exc:
                error = exc
        if not results:
            raise error or ProviderError("No phone number.", retryable=False)
        return results

    def _post(self, message: Message, target: Target) -> str:
        sid = settings.SMS_ACCOUNT_SID
        if not sid:
            raise ProviderError("SMS is not configured (SMS_ACCOUNT_SID).", retryable=False, target=target)
        fields = {"To": target.address, "Body": sms_body(message)}
        if settings.SMS_MESSAGING_SERVICE_SID:
            fields["MessagingServiceSid"] = settings.SMS_MESSAGING_SERVICE_SID
        else:
            fields["From"] = settings.SMS_FROM
        url = f"{settings.SMS_API_BASE_URL.rstrip('/')}/2010-04-01/Accounts/{urllib.parse.quote(sid)}/Messages.json"
        credentials = base64.b64encode(f"{sid}:{settings.SMS_AUTH_TOKEN}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 (the base URL is ours, not a user's)
            url,
            data=urllib.parse.urlencode(fields).encode(),
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.SMS_TIMEOUT) as response:  # noqa: S310 (the base URL is ours)
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, target) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            raise ProviderError(f"SMS service unreachable: {exc}", retryable=True, target=target) from None
        try:
            answer = json.loads(body)
            return str(answer["sid"])
        except (ValueError, KeyError, TypeError):
            # It took the message (2xx) but said so oddly: sending again would duplicate it.
            return ""

    @staticmethod
    def _http_error(exc: urllib.error.HTTPError, target: Target) -> ProviderError:
        try:
            payload = json.loads(exc.read() or b"{}")
        except (ValueError, OSError):
            payload = {}
        detail = payload.get("message") if isinstance(payload, dict) else None
        code = payload.get("code") if isinstance(payload, dict) else None
        text = (
            f"SMS service answered {exc.code}" + (f" (code {code})" if code else "") + (f": {detail}" if detail else "")
        )
        if exc.code == 429:
            return ProviderError(
                text, retryable=True, retry_after=retry_after_seconds(exc.headers.get("Retry-After")), target=target
            )
        return ProviderError(text, retryable=exc.code >= 500, target=target)
