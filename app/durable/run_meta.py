"""What DARA records about a run beside its pipeline's own arguments.

Resonate's root promise holds the call (function, args, kwargs) and nothing else a
caller could name, so DARA passes its own facts about a run as one hidden keyword
argument of the root call, ``_dara``. Being part of the root promise, they are as
durable as the run, on every backend, and are fixed when the run id is first
created: starting the same id again returns the existing promise, facts included.

- ``started_by``: who started the run (shown in the API and pages; cancel checks it).
- ``incarnation``: a nonce unique to this creation of the run id. Callback tokens
  are bound to it (app.callback_tokens), so a token issued to an earlier run that had the
  same id -- before an in-process server restarted, say -- cannot settle this one.
- ``started_at``: when it was started (epoch ms), so whichever worker ends the run
  can tell how long it took without reading the root promise back (app.metrics).

Runs created before these facts existed read as started by ``anonymous`` with an
empty incarnation and a ``started_at`` of 0 (unknown).
"""

from __future__ import annotations

import inspect
import time
import uuid
from dataclasses import dataclass
from typing import Any

#: The hidden keyword argument of every run's root call. A leading underscore keeps
#: it out of a pipeline's parameter model: a caller cannot pass it as a param.
RUN_META = "_dara"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class RunMeta:
    started_by: str = ANONYMOUS
    incarnation: str = ""
    #: Epoch ms; 0 when unknown (a run started before DARA recorded it).
    started_at: int = 0

    @classmethod
    def new(cls, started_by: str) -> RunMeta:
        return cls(started_by=started_by, incarnation=uuid.uuid4().hex, started_at=int(time.time() * 1000))

    @classmethod
    def of(cls, data: Any) -> RunMeta:
        """Read back from a root promise's kwargs; anything unexpected reads as the default."""
        if isinstance(data, RunMeta):
            return data
        if not isinstance(data, dict):
            return cls()
        started_by, incarnation = data.get("started_by"), data.get("incarnation")
        started_at = data.get("started_at")
        return cls(
            started_by=started_by if isinstance(started_by, str) and started_by else ANONYMOUS,
            incarnation=incarnation if isinstance(incarnation, str) else "",
            started_at=started_at if type(started_at) is int and started_at > 0 else 0,
        )

    def as_kwarg(self) -> dict[str, str | int]:
        return {"started_by": self.started_by, "incarnation": self.incarnation, "started_at": self.started_at}


def sdk_parameters(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """``params`` as the SDK sees a DARA function: ``ctx`` first, and the run's facts as a
    keyword-only ``_dara``, so the SDK's signature check lets them through."""
    if any(p.name == RUN_META for p in params):
        msg = f"the parameter name {RUN_META!r} is DARA's own; rename it"
        raise TypeError(msg)
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_ONLY)
    meta = inspect.Parameter(RUN_META, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any)
    end = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    return [ctx, *params[:end], meta, *params[end:]]
