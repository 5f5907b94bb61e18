"""Workspace files of any type on the embedded workspace.

brickhouse 0.1.0 keeps only Python sources, bundle JSON and notebooks in its workspace;
a real workspace holds any file. The console keeps its export ``config.yml`` there and
exports write bundle resource YAML, so :func:`serve_any_files` completes the Workspace
API for the other files: ``workspace/import`` (JSON body, ``RAW`` or ``AUTO``),
``workspace/export`` (``RAW``/``AUTO``, or ``direct_download``), ``workspace/get-status``
and ``workspace/delete``. They are kept under ``<workspace dir>/dara-files``, by their
workspace path; everything brickhouse handles itself still goes to brickhouse.

It wraps the server's request handler (brickhouse routes workspace imports before any
API object DARA can wrap), reading a request body once and handing it on unchanged.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

from brickhouse.api.catalog import ApiBinaryResponse, ApiResponse

IMPORT = "/api/2.0/workspace/import"
EXPORT = "/api/2.0/workspace/export"
STATUS = "/api/2.0/workspace/get-status"
DELETE = "/api/2.0/workspace/delete"
#: What brickhouse keeps itself.
NATIVE_SUFFIXES = (".py", ".json", ".ipynb")
MAX_FILE_BYTES = 10 * 1024 * 1024


class FileStore:
    """Files by workspace path, under ``root``; paths that climb out are refused."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def owns(self, workspace_path: str) -> bool:
        suffix = PurePosixPath(workspace_path).suffix
        return bool(suffix) and suffix not in NATIVE_SUFFIXES

    def local(self, workspace_path: str) -> Path | None:
        parts = PurePosixPath(workspace_path.removeprefix("/Workspace")).parts
        if not workspace_path.startswith("/") or any(part in ("..", ".") for part in parts):
            return None
        return self.root.joinpath(*parts[1:]) if len(parts) > 1 else None


def serve_any_files(server: Any, directory: Path) -> None:
    """Wrap ``server``'s request handler with the routes above, for non-native files."""
    store = FileStore(directory / "dara-files")
    base: Any = server.RequestHandlerClass  # a handler class brickhouse picks

    class AnyFileHandler(base):  # type: ignore[misc,valid-type]
        rfile: Any  # the request body; do_POST replaces it once read

        def do_GET(self) -> None:  # BaseHTTPRequestHandler's name
            parsed = urlsplit(self.path)
            query = parse_qs(parsed.query)
            wanted = query.get("path", [""])[0]
            if parsed.path in (EXPORT, STATUS) and store.owns(wanted):
                self._send_payload(_export(store, wanted, query) if parsed.path == EXPORT else _status(store, wanted))
                return
            super().do_GET()

        def do_POST(self) -> None:
            parsed = urlsplit(self.path)
            if parsed.path not in (IMPORT, DELETE) or "json" not in (self.headers.get("Content-Type") or ""):
                super().do_POST()
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if 0 < length <= MAX_FILE_BYTES * 2 else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            path = body.get("path") if isinstance(body, dict) else None
            if isinstance(path, str) and store.owns(path):
                self._send_payload(_import(store, body) if parsed.path == IMPORT else _delete(store, path))
                return
            self.rfile = io.BytesIO(raw)  # brickhouse's own: hand the body on as it came
            super().do_POST()

    server.RequestHandlerClass = AnyFileHandler


def _import(store: FileStore, body: dict[str, Any]) -> ApiResponse:
    path = body["path"]
    target = store.local(path)
    if target is None:
        return _error(HTTPStatus.BAD_REQUEST, f"path {path!r} is not an absolute workspace path")
    if body.get("format", "RAW") not in ("RAW", "AUTO"):
        return _error(HTTPStatus.BAD_REQUEST, "files other than notebooks are imported with format RAW or AUTO")
    try:
        content = base64.b64decode(str(body.get("content") or ""), validate=True)
    except (binascii.Error, ValueError):
        return _error(HTTPStatus.BAD_REQUEST, "content must be base64")
    if len(content) > MAX_FILE_BYTES:
        return _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the file is too large")
    if target.exists() and str(body.get("overwrite", False)).lower() != "true":
        return ApiResponse(
            HTTPStatus.CONFLICT, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": f"{path} already exists"}
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(content)
    temporary.replace(target)
    return ApiResponse(HTTPStatus.OK, {})


def _export(store: FileStore, path: str, query: dict[str, list[str]]) -> ApiResponse | ApiBinaryResponse:
    target = store.local(path)
    if target is None or not target.is_file():
        return _error(HTTPStatus.NOT_FOUND, f"Path ({path}) doesn't exist.", "RESOURCE_DOES_NOT_EXIST")
    content = target.read_bytes()
    if query.get("direct_download", ["false"])[0].lower() == "true":
        return ApiBinaryResponse(HTTPStatus.OK, content)
    return ApiResponse(HTTPStatus.OK, {"file_type": "RAW", "content": base64.b64encode(content).decode("ascii")})


def _status(store: FileStore, path: str) -> ApiResponse:
    target = store.local(path)
    if target is None or not target.is_file():
        return _error(HTTPStatus.NOT_FOUND, f"Path ({path}) doesn't exist.", "RESOURCE_DOES_NOT_EXIST")
    return ApiResponse(HTTPStatus.OK, {"path": path, "object_type": "FILE", "size": target.stat().st_size})


def _delete(store: FileStore, path: str) -> ApiResponse:
    target = store.local(path)
    if target is None or not target.is_file():
        return _error(HTTPStatus.NOT_FOUND, f"Path ({path}) doesn't exist.", "RESOURCE_DOES_NOT_EXIST")
    target.unlink()
    return ApiResponse(HTTPStatus.OK, {})


def _error(status: HTTPStatus, message: str, code: str = "INVALID_PARAMETER_VALUE") -> ApiResponse:
    return ApiResponse(status, {"error_code": code, "message": message})
