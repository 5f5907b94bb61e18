"""Where task graphs may be read from on the host, and where their files may go.

:class:`TaskGraphRoot` is the one check every reader of a task graph goes through --
``GET /jobs/preview``, ``POST /jobs/deploy`` and the ``upload_task_files`` step: a
folder or task file is named *relative* to DARA_JOBS_ROOT, symlinks are resolved, and
anything that lands outside the root (an absolute name, ``..``, a symlink pointing
out) is refused. :class:`WorkspaceRoot` does the same for the workspace paths the
files are imported to, under DARA_NOTEBOOK_DIR.

Errors name what was asked for and the setting, never the host path of the root:
they end up in API answers and in run errors that callers read.

Nothing here imports ``app``: the service hands these in (``Runtime.wire``), and
``scripts/deploy_job.py`` builds its own.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path, PurePosixPath


class TaskGraphPathError(ValueError):
    """A task-graph folder or file that is absent, or outside the root it must be under.

    ``missing`` tells the two apart: absent (404) or refused (422).
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        self.missing = missing
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross the durability boundary pickled by constructor arguments.
        return (_rebuild, (str(self), self.missing))


def _rebuild(message: str, missing: bool) -> TaskGraphPathError:
    return TaskGraphPathError(message, missing=missing)


class TaskGraphRoot:
    """The folder under which task graphs are read (DARA_JOBS_ROOT)."""

    SETTING = "DARA_JOBS_ROOT"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()

    def __repr__(self) -> str:
        return f"TaskGraphRoot({str(self.path)!r})"

    def folder(self, relative: str) -> Path:
        """The task-graph folder ``relative`` names under the root, symlinks resolved."""
        what = f"folder {relative[:200]!r}"
        folder = self._inside(self.path, relative, what)
        if not _checked(folder.is_dir, what):
            msg = f"no task-graph folder {relative[:200]!r} under {self.SETTING}"
            raise TaskGraphPathError(msg, missing=True)
        return folder

    def relative(self, path: Path) -> str:
        """How a path :meth:`folder` returned is named relative to the root (``.`` for it)."""
        return path.relative_to(self.path).as_posix()

    def file(self, folder: str, name: str) -> Path:
        """The file ``name`` (relative to the task-graph folder ``folder``), symlinks resolved.

        It may be anywhere under the root, but not outside it: neither by ``..`` nor by
        a symlink inside the folder that points out.
        """
        base = self.folder(folder)
        what = f"task file {name[:200]!r} of folder {folder[:200]!r}"
        path = self._inside(base, name, what)
        if not _checked(path.is_file, what):
            msg = f"task file {name[:200]!r} is not in folder {folder[:200]!r}; fix the task list or add it"
            raise TaskGraphPathError(msg, missing=True)
        return path

    def read(self, folder: str, name: str) -> bytes:
        """The bytes of the task file :meth:`file` finds (a read error names no host path)."""
        return _checked(self.file(folder, name).read_bytes, f"task file {name[:200]!r} of folder {folder[:200]!r}")

    def _inside(self, base: Path, relative: str, what: str) -> Path:
        path = _checked((base / relative).resolve, what)
        if not path.is_relative_to(self.path):
            raise TaskGraphPathError(f"{what} is outside {self.SETTING}; name a path inside it")
        return path


def _checked[T](look: Callable[[], T], what: str) -> T:
    """``look()`` at the file system, with its errors (NUL byte, name too long, symlink
    loop) as a refusal that names what was asked for, not the host path."""
    try:
        return look()
    except (OSError, ValueError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TaskGraphPathError(f"{what}: {reason}") from None


class WorkspacePathError(ValueError):
    """A workspace path outside the folder DARA may write to (DARA_NOTEBOOK_DIR)."""


class WorkspaceRoot:
    """The workspace folder DARA imports task files under (DARA_NOTEBOOK_DIR)."""

    SETTING = "DARA_NOTEBOOK_DIR"

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            msg = f"{self.SETTING} {path!r} must be an absolute workspace path"
            raise WorkspacePathError(msg)
        self.path = posixpath.normpath("/" + path.lstrip("/"))

    def __repr__(self) -> str:
        return f"WorkspaceRoot({self.path!r})"

    def check(self, path: str, what: str = "workspace path") -> str:
        """``path`` normalized, if it lies strictly under the root; else raise."""
        if not path.startswith("/") or ".." in PurePosixPath(path).parts or "\0" in path:
            msg = f"{what} {path[:200]!r} must be an absolute path without '..', under {self.path}"
            raise WorkspacePathError(msg)
        normalized = posixpath.normpath("/" + path.lstrip("/"))
        if not normalized.startswith(self.path.rstrip("/") + "/"):
            msg = (
                f"{what} {path[:200]!r} is outside {self.path} ({self.SETTING}); "
                f"use a folder under it, e.g. {self.path.rstrip('/')}/my-job"
            )
            raise WorkspacePathError(msg)
        return normalized
