"""``python -m app``: serve DARA with the settings from the environment."""

import sys
from collections.abc import Iterable

from pydantic import ValidationError

from app.durable import Pipeline
from app.logs import configure_logging
from app.main import create_app
from app.server import dara_server
from app.settings import get_settings
from app.workspace.app_url import AppUrlUnknown, with_app_url


def main(pipelines_to_run: Iterable[Pipeline] | None = None) -> None:
    """Serve; ``pipelines_to_run`` replaces the service's own pipelines (a test worker's)."""
    configure_logging("text")
    try:
        settings = get_settings()
    except ValidationError as exc:  # a setting that is wrong or unsafe: say which, not a traceback
        for error in exc.errors():
            where = ".".join(map(str, error["loc"])) or "settings"
            print(f"DARA cannot start: {where}: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    logging_options = configure_logging(settings.log_format)  # DARA_LOG_FORMAT
    try:
        settings = with_app_url(settings)  # a Databricks App learns where notebooks reach it
    except AppUrlUnknown as exc:
        print(f"DARA cannot start: DARA_PUBLIC_URL: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.postgres_dsn and not settings.resonate_url:
        # Runtime.start checks this too; here a database without the resonate-pg schema is
        # one line that says how to apply it, not a traceback from uvicorn's lifespan.
        from app.durable.postgres_schema import SchemaError, check
        from app.runtime import postgres_password

        try:
            password = postgres_password(settings)  # a Lakebase login: the instance's credential
            check(settings.postgres_dsn, password() if password else None)
        except SchemaError as exc:
            print(f"DARA cannot start: DARA_POSTGRES_DSN: {exc}", file=sys.stderr)
            sys.exit(2)
    server = dara_server(
        create_app(settings, pipelines_to_run=pipelines_to_run), settings, log_level="info", **logging_options
    )
    try:
        server.run()
    except KeyboardInterrupt:  # re-raised by uvicorn once it has shut down on Ctrl-C
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's own exit status when it could not start (uvicorn.run)


if __name__ == "__main__":
    main()
