"""The email channel: Django's email backend (SMTP in production), text and HTML parts.

Settings (docs/operations.md, "Notifications"): ``EMAIL_BACKEND``,
``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``,
``EMAIL_USE_TLS``, ``EMAIL_TIMEOUT``, ``DEFAULT_FROM_EMAIL``; read at each
send, so the provider never caches a connection between batches.

A batch goes over one connection. SMTP answers sort errors: a 4xx reply
(mailbox busy, greylisting) and a lost or refused connection can succeed
later (``retryable``); a 5xx reply (no such mailbox, refused as spam) will
not. After a connection-level error the batch's remaining messages are not
tried on the dead connection: they are retryable too.
"""

from __future__ import annotations

import contextlib
import smtplib
from typing import ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from .base import Message, Provider, ProviderError, SendResult, Target


def _smtp_error(exc: Exception, target: Target) -> tuple[ProviderError, bool]:
    """The ProviderError for ``exc``, and whether the connection is unusable after it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _reply in exc.recipients.values()]
        code = max(codes) if codes else 550
        text = "; ".join(f"{rcpt}: {code} {reply!r}" for rcpt, (code, reply) in exc.recipients.items())
        return ProviderError(f"SMTP refused the recipient: {text}", retryable=code < 500, target=target), False
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        # 421 (service closing) ends the session as well.
        return ProviderError(f"SMTP {code}: {message}", retryable=code < 500, target=target), code == 421
    # SMTPServerDisconnected, SMTPConnectError, socket timeouts, refused connections.
    return ProviderError(f"SMTP connection failed: {exc!r}", retryable=True, target=target), True


class EmailProvider(Provider):
    channel: ClassVar[str] = "email"
    # One SMTP session per batch; most servers accept a hundred messages per session.
    max_batch: ClassVar[int] = 100

    def targets(self, user) -> list[Target]:
        if not user.email or not user.is_active:
            return []
        return [Target(address=user.email)]

    def _email(self, message: Message, target: Target, connection) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.title,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[target.address],
            connection=connection,
            headers={"X-Notification-Id": message.notification_id},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def send(self, message: Message, targets: list[Target]) -> list[SendResult]:
        result = self.send_batch([(message, targets)])[0]
        if isinstance(result, ProviderError):
            raise result
        return result

    def send_batch(self, batch: list[tuple[Message, list[Target]]]) -> list[list[SendResult] | ProviderError]:
        results: list[list[SendResult] | ProviderError] = []
        connection = get_connection(fail_silently=False)
        broken: ProviderError | None = None
        try:
            try:
                connection.open()
            except (smtplib.SMTPException, OSError) as exc:
                broken = _smtp_error(exc, Target(address=""))[0]
            for message, targets in batch:
                if broken is not None:
                    results.append(ProviderError(str(broken), retryable=True))
                    continue
                sent: list[SendResult] = []
                error: ProviderError | None = None
                for target in targets:
                    try:
                        if connection.send_messages([self._email(message, target, connection)]) != 1:
                            # The backend answers 0 without raising when it has no session.
                            raise smtplib.SMTPServerDisconnected("the email backend sent nothing")
                    except (smtplib.SMTPException, OSError) as exc:
                        error, dead = _smtp_error(exc, target)
                        if dead:
                            broken = error
                            break
                        continue
                    sent.append(SendResult(target=target))
                if sent:
                    results.append(sent)
                else:
                    results.append(error or ProviderError("No recipient address.", retryable=False))
        finally:
            # Closing a dead session must not hide the results.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                connection.close()
        return results
