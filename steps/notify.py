"""Telling people a pipeline got somewhere: a Slack-compatible webhook and/or email."""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
from email.message import EmailMessage
from typing import Any

from app.settings import Settings

logger = logging.getLogger(__name__)

#: Longest subject line: the message's first line, cut so mail clients show all of it.
_SUBJECT_CHARS = 120


def notify(settings: Settings, message: str, details: dict[str, Any] | None = None) -> bool:
    """Send ``message`` to every configured channel: the webhook, email, or both.

    Returns whether a notification was sent; with neither ``DARA_NOTIFY_WEBHOOK_URL``
    nor ``DARA_SMTP_HOST`` + ``DARA_NOTIFY_EMAIL_TO`` set, the message is only logged.
    A failing channel does not keep the other from being tried; its error is raised
    afterwards, so the step fails (and is retried if the failure was transient --
    which may repeat the channel that worked: notifications are at-least-once).
    """
    logger.info("notify: %s %s", message, details or "")
    channels = []
    if settings.notify_webhook_url:
        channels.append(_post_webhook)
    if settings.smtp_host and email_recipients(settings):
        channels.append(_send_email)
    errors: list[Exception] = []
    for channel in channels:
        try:
            channel(settings, message, details)
        except Exception as exc:  # re-raised below, after the other channels had their turn
            logger.warning("notify: %s failed: %s", channel.__name__.lstrip("_"), exc)
            errors.append(exc)
    if errors:
        raise errors[0]
    return bool(channels)


def email_recipients(settings: Settings) -> list[str]:
    """``DARA_NOTIFY_EMAIL_TO`` split on commas, blanks dropped."""
    return [a.strip() for a in (settings.notify_email_to or "").split(",") if a.strip()]


def _post_webhook(settings: Settings, message: str, details: dict[str, Any] | None) -> None:
    assert settings.notify_webhook_url
    text = message if not details else f"{message}\n```{json.dumps(details, default=str)}```"
    request = urllib.request.Request(
        settings.notify_webhook_url,
        json.dumps({"text": text}).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _send_email(settings: Settings, message: str, details: dict[str, Any] | None) -> None:
    assert settings.smtp_host
    sender = settings.smtp_from or settings.smtp_user
    if not sender:
        msg = "set DARA_SMTP_FROM (or DARA_SMTP_USER) to send notification emails"
        raise ValueError(msg)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(email_recipients(settings))
    email["Subject"] = _subject(message)
    body = message
    if details:
        body += "\n\n" + json.dumps(details, default=str, indent=2)
    email.set_content(body)
    # smtplib's debug output would include the AUTH exchange: keep it off.
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user and settings.smtp_password:
            smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
        smtp.send_message(email)
    logger.info(
        "notify: emailed %d recipient(s) via %s:%d",
        len(email_recipients(settings)),
        settings.smtp_host,
        settings.smtp_port,
    )


def _subject(message: str) -> str:
    first_line = message.strip().splitlines()[0] if message.strip() else "DARA notification"
    if len(first_line) <= _SUBJECT_CHARS:
        return first_line
    return first_line[: _SUBJECT_CHARS - 1] + "…"
