"""Telling people a pipeline got somewhere."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from app.settings import Settings

logger = logging.getLogger(__name__)


def notify(settings: Settings, message: str, details: dict[str, Any] | None = None) -> bool:
    """Post ``message`` to the Slack-compatible webhook, if one is configured.

    Returns whether a notification was sent; without ``DARA_NOTIFY_WEBHOOK_URL`` the
    message is only logged.
    """
    logger.info("notify: %s %s", message, details or "")
    if not settings.notify_webhook_url:
        return False
    text = message if not details else f"{message}\n```{json.dumps(details, default=str)}```"
    request = urllib.request.Request(
        settings.notify_webhook_url,
        json.dumps({"text": text}).encode(),
        {"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):
        return True
