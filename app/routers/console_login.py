"""Signing a browser in to the console with DARA_API_TOKEN, and out again.

A browser cannot send ``Authorization: Bearer``; here it posts the token once, from a
form (sent by app/static/login.js: DARA's pages send no Referer, so a plain form post
would carry ``Origin: null``, which the cross-site guard refuses), and gets a session cookie (app.security: derived from the token, HttpOnly,
SameSite=Strict) that opens what the token opens. Open routes: they are the way in.
Behind the Databricks Apps proxy none of this is needed: the proxy names the user.
"""

from __future__ import annotations

import re
from html import escape
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.console.layout import page
from app.security import SESSION_COOKIE, ApiAccess

#: Where a sign-in may send the browser on: a path of the console, never another site.
NEXT_PATTERN = r"^/ui(/[A-Za-z0-9._~/%-]*)?(\?[A-Za-z0-9._~=&%+,:-]*)?$"


def build_router(access: ApiAccess) -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["pages"], default_response_class=HTMLResponse)

    @router.get("/login", summary="Sign in to the console with DARA_API_TOKEN")
    async def login_page(next: Annotated[str, Query(max_length=512, pattern=NEXT_PATTERN)] = "/ui") -> str:
        return page("sign in", _form(next, ""), scripts=("login",))

    @router.post(
        "/login", summary="Sign in: a session cookie for the console", responses={401: {"description": "Wrong token."}}
    )
    async def login(
        request: Request,
        token: Annotated[str, Form(max_length=4096)],
        next: Annotated[str, Form(max_length=512, pattern=NEXT_PATTERN)] = "/ui",
    ) -> Response:
        session = access.session_for(token)
        if session is None:
            return HTMLResponse(page("sign in", _form(next, WRONG), scripts=("login",)), status_code=401)
        answer = RedirectResponse(next, status_code=303)
        answer.set_cookie(
            SESSION_COOKIE, session, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
        )
        return answer

    @router.post("/logout", summary="Sign out of the console")
    async def logout() -> Response:
        answer = RedirectResponse("/ui/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    return router


WRONG = "That is not DARA_API_TOKEN."


def _form(next: str, problem: str) -> str:
    error = f'<p class="error" role="alert" id="login-error">{escape(problem)}</p>'
    return (
        "<h1>Sign in</h1><p>This DARA needs its API token (DARA_API_TOKEN). It is asked once; the browser "
        "then keeps a session cookie until it is closed.</p>"
        f'{error}<form method="post" action="/ui/login" id="login"><input type="hidden" name="next" value="{escape(next)}">'
        '<div class="field"><label for="token">API token</label>'
        '<input type="password" id="token" name="token" size="40" autocomplete="current-password" required></div>'
        '<button type="submit" class="primary">Sign in</button></form>'
    )


async def sign_in_first(request: Request, exc: StarletteHTTPException) -> Response:
    """A browser opening a console page without credentials is sent to sign in (and
    back after); every other refusal is FastAPI's own answer."""
    path = request.url.path
    wanted = path + (f"?{request.url.query}" if request.url.query else "")
    if (
        exc.status_code == 401
        and request.method == "GET"
        and path.startswith("/ui")
        and path != "/ui/login"
        and "text/html" in request.headers.get("accept", "")
        and re.fullmatch(NEXT_PATTERN, wanted)
    ):
        return RedirectResponse(f"/ui/login?{urlencode({'next': wanted})}", status_code=303)
    return await http_exception_handler(request, exc)
