"""The callback signer on its own: the token's format, what it refuses, where it lets
notebooks call back, and the secret it keeps when none is configured (app.callback_tokens).

The HTTP side of the same rules is in tests/test_security_callbacks.py; these pin the
details a request cannot easily reach: the exact token a notebook is given, the
incarnations a token may name, and the secret file.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from app.callback_tokens import CallbackSigner, CallbackUrlRefused, load_or_create_secret
from tests.harness import SECRET, make_settings, running_service

BASE = "https://dara.example.com"


def test_the_token_is_the_incarnation_and_the_purpose_bound_mac() -> None:
    """A notebook may call back after DARA was upgraded and restarted: the format is fixed."""
    signer = CallbackSigner(SECRET, BASE)
    mac = hmac.new(SECRET.encode(), b"dara-callback\0run:1\0abc123", hashlib.sha256).hexdigest()

    assert signer.token("run:1", "abc123") == f"abc123.{mac}"
    assert signer.issued_for("run:1", f"abc123.{mac}") == "abc123"
    assert signer.issued_for("run:1", signer.token("run:1", "")) == ""  # a run from before incarnations


@pytest.mark.parametrize(
    "incarnation",
    [
        "a-b",  # ASCII but not alphanumeric
        "é1",  # alphanumeric but not ASCII
        "a.b",  # a dot: the token would split elsewhere
    ],
)
def test_a_token_naming_an_incarnation_dara_never_draws_is_refused(incarnation: str) -> None:
    """Incarnations are ASCII letters and digits; a well-formed MAC for any other is not ours."""
    signer = CallbackSigner(SECRET, BASE)

    assert signer.issued_for("run:1", signer.token("run:1", incarnation)) is None


def test_a_token_without_its_incarnation_part_is_refused() -> None:
    """The bare MAC (the format before incarnations) of a run without one is refused too."""
    signer = CallbackSigner(SECRET, BASE)
    bare = signer.token("run:1", "").removeprefix(".")

    assert signer.issued_for("run:1", bare) is None


def test_a_token_that_is_not_valid_text_is_refused_not_an_error() -> None:
    """JSON may carry a lone surrogate; the comparison must refuse it, not raise."""
    signer = CallbackSigner(SECRET, BASE)

    assert signer.issued_for("run:1", "abc.\ud800" + "0" * 63) is None


def test_a_secret_shorter_than_sixteen_characters_is_refused_saying_which() -> None:
    with pytest.raises(ValueError) as refused:
        CallbackSigner("x" * 15, BASE)

    assert str(refused.value) == "DARA_CALLBACK_SECRET must be at least 16 characters"
    assert CallbackSigner("x" * 16, BASE).token("run:1", "a")  # sixteen is enough


def test_callback_urls_are_compared_without_their_trailing_slash() -> None:
    signer = CallbackSigner(SECRET, f"{BASE}//", ("http://10.0.0.5:8000/",))

    assert signer.base_url == BASE
    assert signer.allowed_urls == (BASE, "http://10.0.0.5:8000")
    assert signer.callback("run:1", "a").url == BASE
    assert signer.callback("run:1", "a", "http://10.0.0.5:8000").url == "http://10.0.0.5:8000"
    assert signer.check_url("http://10.0.0.5:8000//") == "http://10.0.0.5:8000"


def test_only_slashes_are_trimmed_from_a_callback_url() -> None:
    signer = CallbackSigner(SECRET, "http://dara.test/appX/", ("http://10.0.0.5:8000/pathX",))

    assert signer.base_url == "http://dara.test/appX"
    assert signer.check_url("http://10.0.0.5:8000/pathX/") == "http://10.0.0.5:8000/pathX"


def test_a_refused_callback_url_is_quoted_short_and_the_allowed_ones_listed() -> None:
    signer = CallbackSigner(SECRET, BASE, ("http://10.0.0.5:8000",))
    long_url = "https://attacker.example/" + "a" * 500

    with pytest.raises(CallbackUrlRefused) as refused:
        signer.check_url(long_url)

    assert str(refused.value) == (
        f"callback URL {long_url[:200]!r} is not DARA's: notebooks may call back only "
        f"{BASE} or http://10.0.0.5:8000; add it to DARA_CALLBACK_URLS if DARA answers there"
    )


def test_the_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "callback-secret"

    made = load_or_create_secret(path)
    again = load_or_create_secret(path)

    assert len(made) == 64 and int(made, 16) >= 0  # 32 random bytes, as hex
    assert again == made == path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secret_written_by_hand_is_read_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "callback-secret").write_text("operator-chosen-secret-0123\n")

    assert load_or_create_secret(tmp_path / "callback-secret") == "operator-chosen-secret-0123"


def test_without_a_configured_secret_the_service_keeps_one_across_restarts(tmp_path: Path) -> None:
    """A notebook may call back after a restart: the second service must accept its token."""
    settings = make_settings(tmp_path, callback_secret=None, deploy_on_start=False)
    with running_service(settings) as first:
        token = first.runtime.signer.token("run:1", "abc")
    with running_service(settings) as second:
        accepted = second.runtime.signer.issued_for("run:1", token)

    assert accepted == "abc"
    assert stat.S_IMODE((tmp_path / "callback-secret").stat().st_mode) == 0o600
