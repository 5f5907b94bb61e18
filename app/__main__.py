"""``python -m app``: serve DARA with the settings from the environment."""

import logging
import sys

import uvicorn
from pydantic import ValidationError

from app.main import create_app
from app.server import uvicorn_config
from app.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("resonate").setLevel(logging.WARNING)  # per-request INFO lines
    try:
        settings = get_settings()
    except ValidationError as exc:  # a setting that is wrong or unsafe: say which, not a traceback
        for error in exc.errors():
            where = ".".join(map(str, error["loc"])) or "settings"
            print(f"DARA cannot start: {where}: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    if settings.postgres_dsn and not settings.resonate_url:
        # Runtime.start checks this too; here a database without the resonate-pg schema is
        # one line that says how to apply it, not a traceback from uvicorn's lifespan.
        from app.durable.postgres_schema import SchemaError, check

        try:
            check(settings.postgres_dsn)
        except SchemaError as exc:
            print(f"DARA cannot start: DARA_POSTGRES_DSN: {exc}", file=sys.stderr)
            sys.exit(2)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, log_level="info"))
    try:
        server.run()
    except KeyboardInterrupt:  # re-raised by uvicorn once it has shut down on Ctrl-C
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's own exit status when it could not start (uvicorn.run)


if __name__ == "__main__":
    main()
