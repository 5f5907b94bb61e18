"""Static files and the API docs, served by DARA so that every page works offline.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN (and ReDoc
its fonts from Google): without internet they are blank, and a strict CSP would have to
name those hosts. Here both load the copies that the ``fastapi-offline`` wheel ships,
from ``/static/docs/``; the console's own scripts and styles are ``app/static/``, under
``/static/console/``. Static files hold no data, so they are open like ``/docs``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
DOCS_ASSETS = "/static/docs"
CONSOLE_ASSETS = "/static/console"
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "static"


def docs_dir() -> Path:
    """Where the installed fastapi-offline keeps Swagger UI's and ReDoc's files."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Mount the static files and add ``/docs``, its OAuth2 redirect and ``/redoc``.

    The app must be made with ``docs_url=None, redoc_url=None`` so these are the only ones.
    """
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_dir()), name="docs-assets")
    app.mount(CONSOLE_ASSETS, StaticFiles(directory=CONSOLE_DIR), name="console-assets")
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
