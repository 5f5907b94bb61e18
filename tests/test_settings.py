"""Settings read from the environment as the README's table writes them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.settings import Settings


def test_durations_take_seconds_or_iso_8601(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARA_RUN_DEADLINE", "60")
    monkeypatch.setenv("DARA_LEASE", "2.5")
    monkeypatch.setenv("DARA_CALLBACK_TIMEOUT", "PT1H")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.run_deadline == timedelta(seconds=60)
    assert settings.lease == timedelta(seconds=2.5)
    assert settings.callback_timeout == timedelta(hours=1)


def test_lists_take_comma_separated_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARA_ADMINS", "ada@example.com, api-token")
    monkeypatch.setenv("DARA_CALLBACK_URLS", "https://dara.example.com/")

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.admins == ["ada@example.com", "api-token"]
    assert settings.callback_base_urls[-1] == "https://dara.example.com"
