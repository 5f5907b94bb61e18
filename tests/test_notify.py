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
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.durable import RetryPolicy, StepError
from app.durable.retries import call_with_retries
from app.settings import Settings
from app.wiring import notify_config
from steps.notify import NotifyConfig, notify, worth_sending_again
from steps.retryable import DATABRICKS

PASSWORD = "s3cret-smtp-password"


def make_settings(**overrides: Any) -> NotifyConfig:
    """What notify is given for these settings, every channel off unless overridden (env ignored)."""
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
    return notify_config(Settings(_env_file=None, **values))  # type: ignore[call-arg]


# -- an HTTP webhook receiver ---------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


def receiver(received: Webhook) -> type[BaseHTTPRequestHandler]:
    """A handler that records each post in ``received`` and answers its ``status``."""

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

    return Receiver


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received = Webhook(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver(received))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class DownWebhook:
    """A webhook whose port refuses connections until :meth:`comes_up`."""

    received: Webhook
    server: ThreadingHTTPServer
    thread: threading.Thread | None = None

    def comes_up(self) -> None:
        self.server.server_activate()  # listen on the port it held all along
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()


@pytest.fixture
def down_webhook() -> Iterator[DownWebhook]:
    """The port is bound but not listening, so a connection to it is refused -- and no
    other process can take it before the webhook comes up on it."""
    received = Webhook(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver(received), bind_and_activate=False)
    server.server_bind()
    received.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000"
    down = DownWebhook(received, server)
    try:
        yield down
    finally:
        if down.thread is not None:
            server.shutdown()
            down.thread.join()
        server.server_close()


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


def email_settings(sink: SmtpSink, **overrides: Any) -> NotifyConfig:
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
    sent = notify(make_settings(notify_webhook_url=webhook.url), "etl finished", {"run": 42, "rows": 7})

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
    settings = email_settings(smtp_sink, smtp_user="dara-bot", smtp_password=PASSWORD, smtp_from=None)

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
    settings = email_settings(smtp_sink, smtp_starttls=True, smtp_user="dara-bot", smtp_password=PASSWORD)

    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
        notify(settings, "etl finished")

    assert smtp_sink.logins == []
    assert smtp_sink.mails == []


def test_notify_still_emails_when_the_webhook_fails_then_raises(webhook: Webhook, smtp_sink: SmtpSink) -> None:
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


# -- which failures notify is tried again for (its declaration, by the runner's policy) --------


def retried_quickly(slept: list[float], then: Callable[[], None] = lambda: None) -> RetryPolicy:
    """The service's retry policy, but the waits between tries take no time: ``then`` runs
    in the first."""

    async def sleep(seconds: float) -> None:
        if not slept:
            then()
        slept.append(seconds)

    return RetryPolicy(retries=3, delay=2.0, default=DATABRICKS, sleep=sleep)


@pytest.mark.anyio
async def test_a_webhook_that_refused_the_connection_gets_the_notification_on_a_retry(
    down_webhook: DownWebhook,
) -> None:
    """A webhook that is down or restarting refuses the connection; urllib raises that as
    URLError, which notify's docstring promises to retry as transient."""
    slept: list[float] = []
    config = make_settings(notify_webhook_url=down_webhook.received.url)

    sent = await call_with_retries(
        notify, {"config": config, "message": "etl finished"}, retried_quickly(slept, then=down_webhook.comes_up)
    )

    assert sent is True
    assert slept == [2.0]
    assert [json.loads(body)["text"] for _, body in down_webhook.received.posts] == ["etl finished"]


@pytest.mark.anyio
async def test_a_webhook_that_refuses_the_post_itself_is_not_asked_again(webhook: Webhook) -> None:
    webhook.status = 404
    slept: list[float] = []

    with pytest.raises(StepError, match=r"^notify: HTTPError: HTTP Error 404"):
        config = make_settings(notify_webhook_url=webhook.url)
        await call_with_retries(notify, {"config": config, "message": "x"}, retried_quickly(slept))

    assert slept == []
    assert len(webhook.posts) == 1


@pytest.mark.parametrize(
    ("failure", "again"),
    [
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (smtplib.SMTPSenderRefused(451, b"4.3.0 try again later", "dara@example.com"), True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), False),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
    ],
    ids=["disconnected", "4xx-reply", "5xx-reply", "no-starttls", "refused", "bad-certificate"],
)
def test_mail_failures_are_sent_again_only_when_the_server_said_not_now(failure: Exception, again: bool) -> None:
    assert worth_sending_again(failure) is again
