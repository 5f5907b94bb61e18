"""The notify step over real sockets: an HTTP webhook receiver and an SMTP sink.

aiosmtpd is not installed, so the sink is a minimal SMTP responder below (EHLO, AUTH
PLAIN, MAIL, RCPT, DATA, QUIT) -- enough for smtplib, and it records what it got.
Both receivers record a message *before* answering, so once ``notify`` returns the
record is complete and no test has to wait.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import re
import smtplib
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.settings import Settings
from steps.notify import notify

PASSWORD = "s3cret-smtp-password"


def make_settings(**overrides: Any) -> Settings:
    """Notification settings with every channel off unless overridden (env ignored)."""
    values: dict[str, Any] = {
        "notify_webhook_url": None,
        "smtp_host": None,
        "smtp_port": 587,
        "smtp_user": None,
        "smtp_password": None,
        "smtp_from": None,
        "notify_email_to": None,
        "smtp_starttls": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# -- an HTTP webhook receiver ---------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received = Webhook(url="")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.posts.append((dict(self.headers), body))
            self.send_response(received.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- an SMTP sink -------------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpSink:
    host: str
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    #: Every command line received, to show e.g. that no MAIL was sent.
    commands: list[str] = field(default_factory=list)


class _SmtpSession(socketserver.StreamRequestHandler):
    sink: SmtpSink

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        sender, recipients = "", []
        self.reply("220 sink.test ESMTP ready")
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            self.sink.commands.append(command)
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-sink.test")
                self.reply("250-AUTH PLAIN")
                self.reply("250 8BITMIME")
            elif verb == "AUTH":
                _, user, password = base64.b64decode(command.split()[2]).split(b"\0")
                self.sink.logins.append((user.decode(), password.decode()))
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                sender = _address(command)
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(_address(command))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                self.sink.mails.append(Mail(sender, recipients, self.read_message()))
                sender, recipients = "", []
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:  # RSET, NOOP
                self.reply("250 OK")

    def read_message(self) -> EmailMessage:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            line = line[1:] if line.startswith(b"..") else line  # undo dot-stuffing
            lines.append(line.replace(b"\r\n", b"\n"))  # wire line endings to Python's
        parsed = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def _address(command: str) -> str:
    """The address in ``MAIL FROM:<a@b> BODY=8BITMIME`` or ``RCPT TO:<a@b>``."""
    found = re.search(r"<([^>]*)>", command)
    assert found, f"no address in {command!r}"
    return found.group(1)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSession)
    server.daemon_threads = True
    sink = SmtpSink(host="127.0.0.1", port=server.server_address[1])
    server.RequestHandlerClass = type("Session", (_SmtpSession,), {"sink": sink})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def email_settings(sink: SmtpSink, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": sink.host,
        "smtp_port": sink.port,
        "smtp_from": "dara@example.com",
        "notify_email_to": "ops@example.com, data@example.com,",
        "smtp_starttls": False,  # the sink speaks no TLS
    }
    return make_settings(**(values | overrides))


# -- tests ---------------------------------------------------------------------------------------


def test_notify_with_nothing_configured_sends_nothing_and_says_so() -> None:
    assert notify(make_settings(), "etl finished") is False


def test_notify_with_an_smtp_host_but_no_recipients_sends_nothing(smtp_sink: SmtpSink) -> None:
    assert notify(email_settings(smtp_sink, notify_email_to=" , "), "etl finished") is False
    assert smtp_sink.commands == []


def test_notify_posts_slack_compatible_json_to_the_webhook(webhook: Webhook) -> None:
    sent = notify(
        make_settings(notify_webhook_url=webhook.url), "etl finished", {"run": 42, "rows": 7}
    )

    assert sent is True
    [(headers, body)] = webhook.posts
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"text": 'etl finished\n```{"run": 42, "rows": 7}```'}


def test_notify_emails_every_recipient_with_the_message_as_subject_and_body(
    smtp_sink: SmtpSink,
) -> None:
    sent = notify(email_settings(smtp_sink), "etl finished: run 42\nall good", {"rows": 7})

    assert sent is True
    [mail] = smtp_sink.mails
    assert mail.sender == "dara@example.com"
    assert mail.recipients == ["ops@example.com", "data@example.com"]
    assert mail.message["From"] == "dara@example.com"
    assert mail.message["To"] == "ops@example.com, data@example.com"
    assert mail.message["Subject"] == "etl finished: run 42"
    body = mail.message.get_content()
    assert body.startswith("etl finished: run 42\nall good\n\n")
    assert json.loads(body.split("\n\n", 1)[1]) == {"rows": 7}
    assert smtp_sink.logins == []


def test_notify_logs_in_with_the_password_and_never_logs_it(
    smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    settings = email_settings(
        smtp_sink, smtp_user="dara-bot", smtp_password=PASSWORD, smtp_from=None
    )

    with caplog.at_level(logging.DEBUG):
        assert notify(settings, "etl finished") is True

    assert smtp_sink.logins == [("dara-bot", PASSWORD)]
    assert smtp_sink.mails[0].sender == "dara-bot"  # smtp_from defaults to the login
    assert caplog.records, "notify logs what it sends"
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(settings)


def test_notify_refuses_to_mail_in_the_clear_when_starttls_is_not_offered(
    smtp_sink: SmtpSink,
) -> None:
    """With STARTTLS on (the default) and a server that does not offer it, nothing --
    least of all the password -- is sent unencrypted."""
    settings = email_settings(
        smtp_sink, smtp_starttls=True, smtp_user="dara-bot", smtp_password=PASSWORD
    )

    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
        notify(settings, "etl finished")

    assert smtp_sink.logins == []
    assert smtp_sink.mails == []


def test_notify_still_emails_when_the_webhook_fails_then_raises(
    webhook: Webhook, smtp_sink: SmtpSink
) -> None:
    webhook.status = 500
    settings = email_settings(smtp_sink, notify_webhook_url=webhook.url)

    with pytest.raises(Exception, match="500"):
        notify(settings, "etl finished")

    assert len(webhook.posts) == 1
    assert [m.message["Subject"] for m in smtp_sink.mails] == ["etl finished"]


def test_notify_without_a_from_address_says_which_setting_to_set(smtp_sink: SmtpSink) -> None:
    with pytest.raises(ValueError, match="DARA_SMTP_FROM"):
        notify(email_settings(smtp_sink, smtp_from=None), "etl finished")
    assert smtp_sink.mails == []
