"""Telling people a pipeline got somewhere: a Slack-compatible webhook and/or email."""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from steps.retryable import Retryable, retried

logger = logging.getLogger(__name__)

#: Longest subject line: the message's first line, cut so mail clients show all of it.
_SUBJECT_CHARS = 120


@dataclass(frozen=True)
class NotifyConfig:
    """Where notifications go. The service builds it from DARA_NOTIFY_WEBHOOK_URL and the
    DARA_SMTP_* settings (app.wiring) and gives it to :func:`notify`."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    #: Every recipient of the emails; none means no email.
    email_to: tuple[str, ...] = ()
    smtp_starttls: bool = True


def email_recipients(addresses: str | None) -> tuple[str, ...]:
    """A comma-separated list of addresses (``DARA_NOTIFY_EMAIL_TO``), blanks dropped."""
    return tuple(a.strip() for a in (addresses or "").split(",") if a.strip())


def worth_sending_again(exc: BaseException) -> bool:
    """The channel could not be reached, or answered "not now". A refusal -- a 4xx from
    the webhook, a permanent reply from the mail server, a certificate that does not
    verify, no STARTTLS -- would only be refused again."""
    if isinstance(exc, urllib.error.HTTPError):  # the webhook answered
        return exc.code == 429 or exc.code >= 500
    if isinstance(exc, urllib.error.URLError):  # it did not: refused, unreachable, timed out
        return _unreachable(exc.reason)
    if isinstance(exc, smtplib.SMTPResponseException):  # the mail server answered
        return 400 <= exc.smtp_code < 500  # 4xx is "try again later" (RFC 5321)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException):  # e.g. STARTTLS not offered, recipients refused
        return False
    return _unreachable(exc)


def _unreachable(reason: object) -> bool:
    """A network failure on the way to a channel; a TLS failure is the channel's setup."""
    return isinstance(reason, OSError) and not isinstance(reason, ssl.SSLError)


@retried(Retryable(transient=worth_sending_again))
def notify(config: NotifyConfig, message: str, details: dict[str, Any] | None = None) -> bool:
    """Send ``message`` to every configured channel: the webhook, email, or both.

    Returns whether a notification was sent; with neither ``DARA_NOTIFY_WEBHOOK_URL``
    nor ``DARA_SMTP_HOST`` + ``DARA_NOTIFY_EMAIL_TO`` set, the message is only logged.
    A failing channel does not keep the other from being tried; its error is raised
    afterwards, so the step fails (and is retried if the failure was transient --
    which may repeat the channel that worked: notifications are at-least-once).
    """
    logger.info("notify: %s %s", message, details or "")
    channels = []
    if config.webhook_url:
        channels.append(_post_webhook)
    if config.smtp_host and config.email_to:
        channels.append(_send_email)
    errors: list[Exception] = []
    for channel in channels:
        try:
            channel(config, message, details)
        except Exception as exc:  # noqa: BLE001 -- re-raised below, after the other channels had their turn
            logger.warning("notify: %s failed: %s", channel.__name__.lstrip("_"), exc)
            errors.append(exc)
    if errors:
        raise errors[0]
    return bool(channels)


def _post_webhook(config: NotifyConfig, message: str, details: dict[str, Any] | None) -> None:
    assert config.webhook_url
    text = message if not details else f"{message}\n```{json.dumps(details, default=str)}```"
    request = urllib.request.Request(
        config.webhook_url,
        json.dumps({"text": text}).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _send_email(config: NotifyConfig, message: str, details: dict[str, Any] | None) -> None:
    assert config.smtp_host
    sender = config.smtp_from or config.smtp_user
    if not sender:
        msg = "set DARA_SMTP_FROM (or DARA_SMTP_USER) to send notification emails"
        raise ValueError(msg)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(config.email_to)
    email["Subject"] = _subject(message)
    body = message
    if details:
        body += "\n\n" + json.dumps(details, default=str, indent=2)
    email.set_content(body)
    # smtplib's debug output would include the AUTH exchange: keep it off.
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30) as smtp:
        if config.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.smtp_user and config.smtp_password:
            smtp.login(config.smtp_user, config.smtp_password)
        smtp.send_message(email)
    logger.info(
        "notify: emailed %d recipient(s) via %s:%d",
        len(config.email_to),
        config.smtp_host,
        config.smtp_port,
    )


def _subject(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else "DARA notification"
    if len(first_line) <= _SUBJECT_CHARS:
        return first_line
    return first_line[: _SUBJECT_CHARS - 1] + "…"
