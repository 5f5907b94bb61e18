"""Starting ``upload_and_process`` with the file in the request, as multipart form data.

The pipeline uploads from a path on the service's disk, so the route saves the file
first, under ``DARA_STATE_DIR/uploads/<run id>/``, and passes that path. The path must
still exist when the upload step runs: on the in-process and Postgres backends that is
this process; with a Resonate server and several workers, they need to share the state
directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile, status

from app.dependencies import RuntimeDep
from app.routers.answers import ID_TAKEN
from app.limits import check_json_depth
from app.routers.runs import start
from app.runs import RUN_ID_PATTERN, RunView, read_run
from steps.files import check_volume_path

router = APIRouter(tags=["runs"])

PIPELINE = "upload_and_process"
_CHUNK = 1 << 20


@router.post(
    "/runs/upload_and_process", response_model=RunView, status_code=status.HTTP_201_CREATED,
    responses=ID_TAKEN,
)
async def upload_and_process(
    request: Request,
    runtime: RuntimeDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The file to upload to the volume.")],
    volume_path: Annotated[
        str, Form(description="Where it lands: /Volumes/<catalog>/<schema>/<volume>/<path>.")
    ],
    job: Annotated[str, Form(description="The job (name or id) that processes it.")],
    id: Annotated[
        str | None,
        Form(pattern=RUN_ID_PATTERN, description="Names the run; an existing id returns that run."),
    ] = None,
    index: Annotated[
        str | None,
        Form(description="Vector index to sync afterwards: <catalog>.<schema>.<index>."),
    ] = None,
    params: Annotated[
        str | None,
        Form(description='The notebook parameters as a JSON object, e.g. {"day": "mon"}.'),
    ] = None,
) -> RunView:
    """Upload a file and start ``upload_and_process`` on it; an existing id returns that run."""
    run_id = id or uuid.uuid4().hex
    arguments: dict[str, Any] = {"volume_path": volume_path, "job": job, "index": index}
    check_json_depth(params, runtime.settings.max_json_depth, "params")
    arguments["params"] = _json_object(params) if params is not None else None
    try:
        check_volume_path(volume_path)  # before saving: a typo is a 422, not a failed run
    except ValueError as exc:
        raise HTTPException(422, f"volume_path: {exc}") from None
    name = _safe_name(file.filename)
    # One request at a time per app between "does the run exist" and "start it", so a
    # repeated request never overwrites the file a run it did not create is reading.
    async with _lock(request):
        saved = None
        if await read_run(runtime.resonate, run_id) is None:
            saved = runtime.settings.state_dir / "uploads" / run_id / name
            await asyncio.to_thread(_save, file, saved)
        try:
            run, created = await start(runtime, run_id, PIPELINE, {"file": str(saved), **arguments})
        except HTTPException:
            if saved is not None:
                saved.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the folder this request made, if it is empty
                    saved.parent.rmdir()
            raise
    if not created:
        response.status_code = status.HTTP_200_OK
    return run


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f'params: not JSON ({exc}); send an object, e.g. {{"day": "mon"}}'
        raise HTTPException(422, msg) from None
    if not isinstance(value, dict):
        msg = f'params: expected a JSON object, e.g. {{"day": "mon"}}, not {text!r}'
        raise HTTPException(422, msg)
    return value


def _safe_name(filename: str | None) -> str:
    """The upload's own name, refused if it could leave its folder or is unprintable."""
    if not filename:
        raise HTTPException(422, "file: the upload has no filename; send one in the form part")
    if (
        "/" in filename
        or "\\" in filename
        or filename in (".", "..")
        or len(filename.encode()) > 255
        or not filename.isprintable()
    ):
        msg = f"file: {filename!r} is not a plain file name; send it without folders, e.g. data.csv"
        raise HTTPException(422, msg)
    return filename


def _save(upload: UploadFile, path: Path) -> None:
    """Copy the upload to ``path`` in chunks, replacing it whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(upload.file, out, _CHUNK)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _lock(request: Request) -> asyncio.Lock:
    state = request.app.state
    if not hasattr(state, "upload_lock"):
        state.upload_lock = asyncio.Lock()
    return state.upload_lock
