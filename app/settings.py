"""Configuration, read from the environment (and an optional ``.env`` file).

Every knob lives here and in the README's configuration table, nowhere else. Names
that other tools already own keep their own spelling -- ``RESONATE_URL`` (the
Resonate SDK and CLI) and ``DATABRICKS_*`` (databricks-sdk unified auth) -- and
DARA's own settings carry the ``DARA_`` prefix.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DARA_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # -- where the service listens, and where notebooks call it back ----------
    host: str = "127.0.0.1"
    port: int = 8000
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
        description="Postgres 16+ (e.g. Lakebase) holding the resonate-pg schema; "
        "used when RESONATE_URL is unset.",
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
    demo_job_name: str = "dara-demo"
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
        description="HMAC key for callback tokens; unset means one generated once "
        "and kept in DARA_STATE_DIR.",
    )
    max_value_bytes: int = Field(default=1 << 20, description="Largest accepted request body.")

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
    max_json_depth: int = Field(
        default=32,
        ge=1,
        le=200,  # GET /runs/{id} nests values a few levels deeper; pydantic stops at ~255
        description="Deepest nesting of JSON arrays and objects in a request body, in pipeline "
        "params and in a resolve value.",
    )

    # -- deadlines and retries -----------------------------------------------------
    run_deadline: timedelta = Field(
        default=timedelta(hours=24), description="Deadline of every run (ISO 8601 or seconds)."
    )
    callback_timeout: timedelta = Field(
        default=timedelta(hours=12), description="How long a pipeline waits for a notebook."
    )
    step_retries: int = Field(default=3, description="Retries of a step's transient failures.")
    step_retry_delay: float = Field(
        default=2.0, description="First retry delay in seconds; doubles on each retry."
    )

    # -- notifications -------------------------------------------------------------
    notify_webhook_url: str | None = Field(
        default=None, description="Slack-compatible webhook that notify steps post to."
    )

    # .. email notifications (SMTP); sent when smtp_host and notify_email_to are set ..
    smtp_host: str | None = Field(
        default=None, description="SMTP server that notify steps send email through."
    )
    smtp_port: int = Field(default=587, description="SMTP port (587: submission with STARTTLS).")
    smtp_user: str | None = Field(default=None, description="SMTP login; unset means no login.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str | None = Field(
        default=None, description="From address of notification emails (default: smtp_user)."
    )
    notify_email_to: str | None = Field(
        default=None, description="Comma-separated recipients of notification emails."
    )
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS before logging in."
    )

    @property
    def callback_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def uses_embedded_workspace(self) -> bool:
        return not (self.databricks_host or self.databricks_profile)


@lru_cache
def get_settings() -> Settings:
    return Settings()
