"""Files uploaded to DARA, kept by opaque handle until their run has put them in a volume.

``POST /runs/upload_and_process`` saves the request's file here and starts the run with
its *handle* -- 32 random hex digits -- never a host path. A run can only use a handle
issued to it: the stored name is derived from the run's id and the handle, so a caller
who read another run's handle (run params are public to API users) gets "no upload"
when starting a run of their own with it. Whatever the pipeline does, a handle names
a file in this folder and nothing else: anything not matching the pattern is refused.

The pipeline discards its upload once it is in the volume (the durable step result
records that it is); the service purges what runs never took when it starts.

The store is on the local disk: on the in-process and Postgres backends that is this
process; with a Resonate server and several workers, they need to share DARA_STATE_DIR.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from databricks.sdk import WorkspaceClient

from steps.files import UploadedFile, check_volume_path
from steps.retryable import DATABRICKS, NEVER, retried

#: What a handle looks like: exactly this, nothing else (no dots, no slashes).
HANDLE_PATTERN = r"^[0-9a-f]{32}$"
_HANDLE = re.compile(HANDLE_PATTERN)
_CHUNK = 1 << 20


class UnknownUpload(ValueError):
    """A handle that names no saved upload (for this run); says nothing about the disk."""

    def __init__(self, handle: str) -> None:
        self.handle = handle
        super().__init__(
            f"no upload {handle!r}: it was removed after its run, or DARA never issued it to this run; "
            "upload the file again with POST /runs/upload_and_process"
        )

    def __reduce__(self) -> tuple[type[UnknownUpload], tuple[str]]:
        return (UnknownUpload, (self.handle,))


class UploadStore:
    """Uploads under ``root`` (DARA_STATE_DIR/uploads), by handle and run id."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"UploadStore({str(self.root)!r})"

    def save(self, source: BinaryIO, run_id: str) -> str:
        """Copy ``source`` in, whole or not at all, for ``run_id``; returns a fresh handle."""
        handle = secrets.token_hex(16)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            os.replace(partial, self._stored(handle, run_id))
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return handle

    def path(self, handle: str, run_id: str) -> Path:
        """The saved file of ``handle`` for ``run_id``; :class:`UnknownUpload` if there is none."""
        path = self._stored(handle, run_id)
        if not path.is_file():
            raise UnknownUpload(handle)
        return path

    def discard(self, handle: str, run_id: str) -> bool:
        """Remove the upload; whether there was one. Safe to repeat."""
        path = self._stored(handle, run_id)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return existed

    def purge(self, older_than: timedelta) -> int:
        """Remove uploads (and partial saves) last written over ``older_than`` ago; how many."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for entry in self.root.iterdir():
            try:
                if entry.is_file() and not entry.is_symlink() and entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except OSError:  # gone meanwhile, or not ours to remove: the next start tries again
                continue
        return removed

    def _stored(self, handle: str, run_id: str) -> Path:
        if not isinstance(handle, str) or not _HANDLE.fullmatch(handle):
            msg = f"{str(handle)[:40]!r} is not an upload handle (32 hex digits, as DARA issues them)"
            raise ValueError(msg)
        digest = hashlib.sha256(f"{run_id}\0{handle}".encode()).hexdigest()
        return self.root / digest


@retried(DATABRICKS)
def upload_saved_file(
    w: WorkspaceClient, store: UploadStore, upload: str, volume_path: str, run_id: str
) -> UploadedFile:
    """Upload the file saved as ``upload`` (for run ``run_id``) to ``volume_path``.

    Safe to repeat: the file stays until :func:`discard_upload`, and the upload overwrites.
    """
    check_volume_path(volume_path)
    path = store.path(upload, run_id)
    try:
        source = path.open("rb")
    except FileNotFoundError:  # discarded meanwhile
        raise UnknownUpload(upload) from None
    except OSError as exc:  # its message would name the host path
        msg = f"cannot read upload {upload!r}: {exc.strerror or type(exc).__name__}"
        raise PermissionError(msg) from None
    with source:
        size = os.fstat(source.fileno()).st_size
        w.files.upload(volume_path, source, overwrite=True)
    return UploadedFile(path=volume_path, size=size)


@retried(NEVER)  # a file on the local disk: nothing to wait for
def discard_upload(store: UploadStore, upload: str, run_id: str) -> bool:
    """Remove the saved upload: the volume has it now, or never will. Whether it was there."""
    return store.discard(upload, run_id)
