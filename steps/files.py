"""Steps that put files into Unity Catalog volumes."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO

from databricks.sdk import WorkspaceClient

from steps.retryable import DATABRICKS, retried

#: ``/Volumes/<catalog>/<schema>/<volume>/<path inside the volume>``.
_VOLUME_FILE = re.compile(r"/Volumes/[^/]+/[^/]+/[^/]+/(?:[^/]+/)*[^/]+")


@dataclass(frozen=True)
class UploadedFile:
    """Where a file landed, and how many bytes it has."""

    path: str
    size: int


@retried(DATABRICKS)
def upload_to_volume(
    w: WorkspaceClient,
    volume_path: str,
    *,
    local_path: str | None = None,
    content: bytes | str | None = None,
    overwrite: bool = True,
) -> UploadedFile:
    """Upload a local file (``local_path``) or ``content`` to ``volume_path``.

    ``local_path`` is opened as given, so only server code may choose it, never a
    caller: a file a request brought comes by handle (``steps.uploaded_files``).

    ``content`` may be text (sent as UTF-8), so a pipeline can pass it as a durable,
    JSON-encoded step argument. With ``overwrite`` (the default) a re-executed step
    writes the same bytes again, which makes the upload safe to repeat.
    """
    check_volume_path(volume_path)
    if (local_path is None) == (content is None):
        msg = "pass exactly one of local_path and content"
        raise ValueError(msg)
    if local_path is not None:
        size = os.path.getsize(local_path)
        with open(local_path, "rb") as source:
            _upload(w, volume_path, source, overwrite)
        return UploadedFile(path=volume_path, size=size)
    data = content.encode() if isinstance(content, str) else content
    assert data is not None
    _upload(w, volume_path, io.BytesIO(data), overwrite)
    return UploadedFile(path=volume_path, size=len(data))


def _upload(w: WorkspaceClient, volume_path: str, source: BinaryIO, overwrite: bool) -> None:
    # Seekable sources, so databricks-sdk can rewind and retry a throttled upload.
    w.files.upload(volume_path, source, overwrite=overwrite)


def check_volume_path(volume_path: str) -> None:
    """Refuse a path the Files API would reject, with what a valid one looks like.

    Checked before any byte is sent, so a typo fails the step at once instead of
    after a slow upload, and as a ValueError the runner does not retry.
    """
    if not _VOLUME_FILE.fullmatch(volume_path) or "/../" in f"{volume_path}/":
        msg = (
            f"{volume_path!r} is not a file in a Unity Catalog volume; expected "
            "/Volumes/<catalog>/<schema>/<volume>/<path>, e.g. "
            "/Volumes/main/default/landing/input.csv"
        )
        raise ValueError(msg)
