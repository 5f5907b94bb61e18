"""Log lines: plain text by default, one JSON object a line with ``DARA_LOG_FORMAT=json``.

Every line can say which request and which run it belongs to. Both are context
variables, so they follow the work wherever asyncio and ``asyncio.to_thread`` carry it:

- ``request_id``: set for each HTTP request by app.request_id (a sane incoming
  ``X-Request-Id``, or a new one), and inherited by the work the request sets off in
  this process: the first execution of a run it starts, the resume a callback causes;
- ``run_id``: set where a run is known -- a request for ``/runs/{id}``, a start, a
  callback -- and for each execution of a pipeline, its steps included (app.observability).

The JSON formatter is the standard library's ``logging.Formatter`` with a ``format``
of its own: each line has a handful of fixed keys, so python-json-logger would add a
dependency to save a dozen lines.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dara_request_id", default=None)
RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("dara_run_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else was passed as ``extra=`` and is kept
#: (but not uvicorn's ``color_message``, the message again with terminal colours).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


def bind_run(run_id: str) -> contextvars.Token[str | None]:
    """Say that what follows, in this context, is about run ``run_id``."""
    return RUN_ID.set(run_id)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request and run ids, and
    ``exception`` when there is one. Values passed with ``extra=`` are kept too."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := REQUEST_ID.get()) is not None:
            line["request_id"] = request_id
        if (run_id := RUN_ID.get()) is not None:
            line["run_id"] = run_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(log_format: Literal["text", "json"]) -> dict[str, Any]:
    """Set up the root logger; returns the ``uvicorn.Config`` options that go with it.

    In JSON, uvicorn must not install its own handlers and text formats
    (``log_config=None``): its loggers, the access log included, then reach the root's
    JSON handler.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("resonate").setLevel(logging.WARNING)  # per-request INFO lines
    return {"log_config": None} if log_format == "json" else {}
