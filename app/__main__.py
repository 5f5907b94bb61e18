"""``python -m app``: serve DARA with the settings from the environment."""

import logging

import uvicorn

from app.main import create_app
from app.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("resonate").setLevel(logging.WARNING)  # per-request INFO lines
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
