"""Configuration, read from the environment (and an optional ``.env`` file).

Every knob lives here and in the README's configuration table, nowhere else. Names
that other tools already own keep their own spelling -- ``RESONATE_URL`` (the
Resonate SDK and CLI) and ``DATABRICKS_*`` (databricks-sdk unified auth) -- and
DARA's own settings carry the ``DARA_`` prefix.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Variables the Databricks Apps runtime sets in every app; their presence is how DARA
#: knows a proxy that signs users in stands in front of it.
APPS_RUNTIME_VARIABLES = ("DATABRICKS_APP_NAME", "DATABRICKS_APP_PORT")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _comma_list(value: object) -> object:
    """``a, b`` from the environment as ``["a", "b"]``; a list passes through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _seconds(value: object) -> object:
    """``60`` or ``1.5`` from the environment as seconds; ISO 8601 (``PT1M``) passes through."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


#: A duration setting: ISO 8601 (``PT12H``) or a number of seconds, as the README says.
type Duration = Annotated[timedelta, BeforeValidator(_seconds)]

#: A list setting written as comma-separated text in the environment.
type CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


def running_as_databricks_app() -> bool:
    return all(os.environ.get(name) for name in APPS_RUNTIME_VARIABLES)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DARA_", env_file=".env", extra="ignore", populate_by_name=True)

    # -- where the service listens, and where notebooks call it back ----------
    host: str = "127.0.0.1"
    port: int = 8000
    apps_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("DATABRICKS_APP_PORT", "apps_port"),
        description="The port the Databricks Apps runtime tells the app to listen on; when set, "
        "DARA listens there on 0.0.0.0 (the Apps proxy reaches it over the network), whatever "
        "DARA_HOST and DARA_PORT say.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL notebooks use to call POST /resolve "
        "(default: http://{host}:{port}). Set it to an address the workspace can reach.",
    )

    # -- durable state -----------------------------------------------------------
    resonate_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RESONATE_URL", "DARA_RESONATE_URL"),
        description="Resonate server URL; unset means an in-process server (memory only).",
    )
    postgres_dsn: str | None = Field(
        default=None,
        description="Postgres 16+ (e.g. Lakebase) holding the resonate-pg schema; used when RESONATE_URL is unset.",
    )
    lease: Duration = Field(
        default=timedelta(seconds=60),
        ge=timedelta(seconds=1),
        description="Task lease on a Resonate server or Postgres (ISO 8601, e.g. PT60S): a live "
        "worker renews it every half lease; a worker that dies (killed, cut off) holds its "
        "runs' current work until it lapses, then another worker takes over. The in-process "
        "server ignores it.",
    )
    postgres_timeout: float = Field(
        default=1.5,
        gt=0,
        description="Seconds a request waits for a Postgres connection before it fails with a 503 "
        "(and libpq's connect_timeout, at least 2).",
    )
    postgres_drive_timers: bool = Field(
        default=True,
        description="Fire resonate-pg's timers (sleeps, wait deadlines) from DARA by calling "
        "resonate.process_timeouts() every 0.25 s; false only when pg_cron drives them.",
    )
    timer_alert_after: float = Field(
        default=10.0,
        gt=0,
        description="Seconds without a successful timer tick on Postgres after which DARA logs "
        "an alert and GET /health answers 503.",
    )
    lakebase_host: str | None = Field(
        default=None,
        description="Host of the Lakebase instance, from a Databricks App's database resource "
        "(valueFrom). With it and no DARA_POSTGRES_DSN, the DSN is that host, and libpq takes "
        "the database, user, port and SSL mode from PGDATABASE, PGUSER, PGPORT and PGSSLMODE, "
        "which the Apps runtime sets for the resource. Needs DARA_LAKEBASE_INSTANCE.",
    )
    lakebase_instance: str | None = Field(
        default=None,
        description="Lakebase database instance whose OAuth credential (renewed before it expires, "
        "through databricks-sdk) is the password of DARA_POSTGRES_DSN's user.",
    )
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".dara",
        description="Local state: the embedded workspace and the generated callback secret.",
    )

    # -- Databricks --------------------------------------------------------------
    databricks_host: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABRICKS_HOST", "DARA_DATABRICKS_HOST")
    )
    databricks_profile: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABRICKS_CONFIG_PROFILE", "DARA_DATABRICKS_PROFILE"),
    )
    databricks_retry_timeout: int = Field(
        default=60,
        description="Seconds databricks-sdk keeps retrying a throttled or unreachable API "
        "call (its own default is 300) before a step sees the error and its retries take over.",
    )
    notebook_dir: str = Field(
        default="/Workspace/Shared/dara",
        description="Workspace folder the notebooks in notebooks/ are imported into.",
    )
    export_config_path: str = Field(
        default="/Workspace/Shared/dara/export/config.yml",
        pattern=r"^/(Workspace|Users|Shared)/[^\x00]*\.ya?ml$",
        description="Workspace file the console's export config (config.yml) is loaded from and saved to.",
    )
    export_start_path: str = Field(
        default="/Workspace/Shared/dara/exports",
        pattern=r"^/(Workspace|Users|Shared)/",
        description="Default v_start_path of a new export config: where exports are written.",
    )
    demo_job_name: str = Field(
        default="dara-demo",
        validation_alias=AliasChoices("DARA_DEMO_JOB_ID", "DARA_DEMO_JOB_NAME", "demo_job_name"),
        description="The demo job GET /run starts, by name or id (a Databricks App gets the id "
        "from its job resource as DARA_DEMO_JOB_ID).",
    )
    jobs_root: Path = Field(
        default=PROJECT_ROOT / "examples",
        description="Folder under which POST /jobs/deploy and GET /jobs/preview read task graphs.",
    )
    deploy_on_start: bool = Field(
        default=True,
        description="Import notebooks/ and create or update the demo job when the service starts.",
    )

    # -- callbacks -------------------------------------------------------------------
    callback_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for callback tokens; unset means one generated once and kept in DARA_STATE_DIR.",
    )
    max_value_bytes: int = Field(default=1 << 20, description="Largest accepted request body.")
    client_timeout: float = Field(
        default=30,
        gt=0,
        description="Seconds a client may take to send a request's headers and body (and, on a "
        "new connection, to start sending); a slower or silent connection is closed.",
    )

    # -- API access ------------------------------------------------------------------
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token (16+ chars) every route needs except GET /health, the docs "
        "and the callbacks (POST /resolve, /reject: they check per-promise tokens). "
        "Unset means the API is open.",
    )
    trust_forwarded_user: bool = Field(
        default=False,
        description="Accept the user a Databricks Apps proxy vouches for (X-Forwarded-Email / "
        "X-Forwarded-User) without the token, and refuse requests without either. Only "
        "behind that proxy: anyone reaching the port directly could claim any user.",
    )
    admins: CommaList = Field(
        default_factory=list,
        description="Users (as authenticated: a forwarded email, or `api-token`) who may cancel "
        "any run; everyone else may cancel only the runs they started.",
    )
    allowed_hosts: CommaList = Field(
        default_factory=list,
        description="Host names (optionally host:port) requests may address, besides loopback and "
        "DARA_PUBLIC_URL's host; `*` allows any. Guards against DNS rebinding.",
    )
    callback_urls: CommaList = Field(
        default_factory=list,
        description="Base URLs a run may tell its notebooks to call back, besides DARA_PUBLIC_URL "
        "(the `url` parameter of GET /run and notebook_job).",
    )
    max_json_depth: int = Field(
        default=32,
        ge=1,
        le=200,  # GET /runs/{id} nests values a few levels deeper; pydantic stops at ~255
        description="Deepest nesting of JSON arrays and objects in a request body, in pipeline "
        "params and in a resolve value.",
    )

    # -- deadlines and retries -----------------------------------------------------
    run_deadline: Duration = Field(
        default=timedelta(hours=24), description="Deadline of every run (ISO 8601 or seconds)."
    )
    callback_timeout: Duration = Field(
        default=timedelta(hours=12), description="How long a pipeline waits for a notebook."
    )
    watch_interval: Duration = Field(
        default=timedelta(seconds=50),
        gt=timedelta(0),
        description="How often run watchers look at their Databricks runs, and how old the one "
        "listing of the workspace's active runs they share may get (ISO 8601 or seconds). A run "
        "that ends without calling back is noticed within two intervals and a 5 s grace period.",
    )
    run_events_user: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="User name Databricks' job notifications (a webhook notification destination "
        "with HTTP Basic auth) send to POST /api/databricks/run-events. With DARA_RUN_EVENTS_PASSWORD "
        "it turns run events on: a run's end is checked when Databricks says it ended, and the "
        "listing of active runs becomes a backstop paced by DARA_WATCH_CALLS_PER_MINUTE.",
    )
    run_events_password: SecretStr | None = Field(
        default=None,
        description="Password of that destination (16+ characters).",
    )
    watch_calls_per_minute: int = Field(
        default=6,
        ge=1,
        le=600,
        description="With run events on: the Databricks calls a minute the backstop listing of active "
        "runs may make, whatever the number of waiting runs (a listing of many runs takes longer). "
        "A run that ends costs one more read, from its event or the listing.",
    )
    repair_window: Duration = Field(
        default=timedelta(0),
        ge=timedelta(0),
        description="How long after a Databricks run ended FAILED or TIMEDOUT without calling back "
        "its wait is kept open, so POST /runs/{id}/repair can rerun the failed tasks (ISO 8601 or "
        "seconds). 0: the wait fails at once, as without repair.",
    )
    run_retention: Duration = Field(
        default=timedelta(days=7),
        description="How long a finished run stays readable on Postgres or the in-process server "
        "before DARA deletes it (checked at start and hourly; ISO 8601 or seconds).",
    )
    step_retries: int = Field(default=3, description="Retries of a step's transient failures.")
    step_retry_delay: float = Field(default=2.0, description="First retry delay in seconds; doubles on each retry.")

    # -- observability (GET /metrics needs no setting) ---------------------------------
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text, or as one JSON object a line carrying the request and run ids.",
    )
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "DARA_OTEL_ENDPOINT"),
        description="OTLP collector to export traces to (needs the otel extra); unset means no traces.",
    )
    otel_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_PROTOCOL", "DARA_OTEL_PROTOCOL"),
        description="OTLP transport of the trace exporter.",
    )

    # -- notifications -------------------------------------------------------------
    notify_webhook_url: str | None = Field(
        default=None, description="Slack-compatible webhook that notify steps post to."
    )

    # .. email notifications (SMTP); sent when smtp_host and notify_email_to are set ..
    smtp_host: str | None = Field(default=None, description="SMTP server that notify steps send email through.")
    smtp_port: int = Field(default=587, description="SMTP port (587: submission with STARTTLS).")
    smtp_user: str | None = Field(default=None, description="SMTP login; unset means no login.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str | None = Field(default=None, description="From address of notification emails (default: smtp_user).")
    notify_email_to: str | None = Field(default=None, description="Comma-separated recipients of notification emails.")
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS before logging in."
    )

    @model_validator(mode="after")
    def _listen_where_the_apps_runtime_says(self) -> Settings:
        if self.apps_port is not None:
            # An App must listen on all interfaces: the Apps proxy is not on its loopback.
            self.host, self.port = "0.0.0.0", self.apps_port
        return self

    @model_validator(mode="after")
    def _postgres_from_the_apps_database_resource(self) -> Settings:
        if self.lakebase_host and not self.postgres_dsn:
            if not self.lakebase_instance:
                msg = (
                    "DARA_LAKEBASE_HOST is set without DARA_LAKEBASE_INSTANCE: name the Lakebase "
                    "instance, whose OAuth credential is the password"
                )
                raise ValueError(msg)
            from psycopg.conninfo import make_conninfo  # psycopg comes with resonate-pg

            self.postgres_dsn = make_conninfo("", host=self.lakebase_host)
        return self

    @model_validator(mode="after")
    def _forwarded_user_needs_the_apps_proxy(self) -> Settings:
        if self.trust_forwarded_user and not running_as_databricks_app():
            msg = (
                "DARA_TRUST_FORWARDED_USER=true is only safe behind the Databricks Apps proxy, and "
                f"{' and '.join(APPS_RUNTIME_VARIABLES)} are not set, so this is not a Databricks App: "
                "anyone reaching the port could claim any user. Unset it and use DARA_API_TOKEN."
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _run_events_need_both_credentials(self) -> Settings:
        # Half a configuration would leave the route open or silently off: refuse it.
        if (self.run_events_user is None) != (self.run_events_password is None):
            msg = (
                "set both DARA_RUN_EVENTS_USER and DARA_RUN_EVENTS_PASSWORD (the user name and password "
                "of Databricks' webhook notification destination), or neither"
            )
            raise ValueError(msg)
        if self.run_events_password is not None and len(self.run_events_password.get_secret_value()) < 16:
            msg = "DARA_RUN_EVENTS_PASSWORD must be at least 16 characters: whoever guesses it can make DARA read runs"
            raise ValueError(msg)
        return self

    @property
    def run_events_enabled(self) -> bool:
        """Whether Databricks' job notifications are taken (POST /api/databricks/run-events)."""
        return self.run_events_user is not None and self.run_events_password is not None

    @property
    def callback_base_urls(self) -> tuple[str, ...]:
        """Every base URL a notebook may be told to call back: the public URL first."""
        return (self.callback_base_url, *(url.rstrip("/") for url in self.callback_urls))

    @property
    def host_names(self) -> tuple[str, ...]:
        """Host names requests may address: loopback, the public URL's (and those of
        DARA_CALLBACK_URLS, which notebooks call back too), DATABRICKS_APP_URL's, DARA_ALLOWED_HOSTS."""
        urls = (*self.callback_base_urls, os.environ.get("DATABRICKS_APP_URL", ""))
        named = (urlsplit(url).hostname for url in urls)
        return tuple(dict.fromkeys([*LOOPBACK_HOSTS, *(h for h in named if h), *self.allowed_hosts]))

    @property
    def callback_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def uses_embedded_workspace(self) -> bool:
        return not (self.databricks_host or self.databricks_profile)


@lru_cache
def get_settings() -> Settings:
    return Settings()
