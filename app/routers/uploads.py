"""Starting ``upload_and_process`` with the file in the request, as multipart form data.

The route saves the file in the upload store (``steps.uploaded_files``, under
``DARA_STATE_DIR/uploads``) and starts the run with the opaque handle it issues --
never a host path, in the run's params or in this answer. The pipeline discards the
file once the volume has it; a request that finds the run already there (200)
discards the copy it just saved. The file must still be there when the upload step
runs: on the in-process and Postgres backends that is this process; with a Resonate
server and several workers, they need to share the state directory.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status

from app.dependencies import RuntimeDep
from app.limits import check_json_depth
from app.routers.answers import ID_TAKEN
from app.security import CurrentUser, audit
from app.services import starting
from app.services.run_status import RUN_ID_PATTERN, RunView
from steps.files import check_volume_path

router = APIRouter(tags=["runs"])

PIPELINE = "upload_and_process"


@router.post(
    "/runs/upload_and_process",
    response_model=RunView,
    status_code=status.HTTP_201_CREATED,
    responses=ID_TAKEN,
)
async def upload_and_process(
    runtime: RuntimeDep,
    user: CurrentUser,
    response: Response,
    file: Annotated[UploadFile, File(description="The file to upload to the volume.")],
    volume_path: Annotated[str, Form(description="Where it lands: /Volumes/<catalog>/<schema>/<volume>/<path>.")],
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
    _safe_name(file.filename)
    store = runtime.uploads
    # Every request saves under a fresh handle, so none can replace the file a run reads.
    await asyncio.to_thread(file.file.seek, 0)
    handle = await asyncio.to_thread(store.save, file.file, run_id)
    created = False
    try:
        run, created = await starting.start(
            runtime, run_id, PIPELINE, {"upload": handle, **arguments}, started_by=user, by_caller=False
        )
    finally:
        if not created:  # refused, or the run already existed: it will never read this copy
            await asyncio.to_thread(store.discard, handle, run_id)
    audit(user, "started" if created else "asked again for", run.id, run.pipeline)
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
    """The upload's own name, refused if it has folders in it or is unprintable.

    Only checked, never used on disk (the store names files by handle): a name like
    ``../x.csv`` says the client meant something this route does not do.
    """
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
