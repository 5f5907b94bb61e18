"""Where a run is started: once per id, with checked parameters, for whoever asked."""

from __future__ import annotations

from typing import Any

import pydantic

from app.durable import ANONYMOUS
from app.durable.params import CALLBACK_URLS
from app.runtime import Runtime
from app.services.errors import BadParams, IdTaken, PipelineNotFound
from app.services.run_status import RunView, read_run


async def start(
    runtime: Runtime,
    run_id: str,
    pipeline_name: str,
    params: dict[str, Any],
    *,
    started_by: str = ANONYMOUS,
    by_caller: bool,
) -> tuple[RunView, bool]:
    """Start a run for ``started_by``, or find the one already called ``run_id``; (run, created).

    ``by_caller``: the params came from the caller as they are (``POST /runs``), so
    those only DARA sets are refused. Raises PipelineNotFound, BadParams or IdTaken.
    """
    pipeline = runtime.pipelines.get(pipeline_name)
    if pipeline is None:
        raise PipelineNotFound(pipeline_name, list(runtime.pipelines))
    if by_caller and (refusal := pipeline.caller_refusal(params)):
        raise BadParams(refusal)
    try:
        validated = pipeline.validate(params, context={CALLBACK_URLS: runtime.signer.allowed_urls})
    except pydantic.ValidationError as exc:
        # Asking again for a run that exists needs no valid params: it is not started again.
        if (existing := await read_run(runtime.resonate, run_id, with_steps=False)) is None:
            # Each names its parameter: the model is a signature's, fed a dict, without validators of its own.
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise BadParams.invalid(pipeline.name, problems) from None
    else:
        # Create first, then look at what the id holds: Resonate starts an id once, and
        # the run that holds it carries the incarnation of the start that created it.
        # So of any number of starts racing on one id -- in this process or on other
        # workers -- exactly one is told it created the run.
        meta, root = await runtime.start_run(run_id, pipeline, validated, started_by=started_by)
        # A run a moment old has no steps worth a request each to read; where the
        # backend kept the create's reply, the root promise needs no read either.
        existing = await read_run(runtime.resonate, run_id, with_steps=False, root=root)
        assert existing is not None, f"run {run_id!r} is not there right after its start"
        if existing.incarnation == meta.incarnation:
            runtime.metrics.run_started(pipeline.name)
            return existing, True
    if existing.pipeline != pipeline.name:
        raise IdTaken(run_id, existing.pipeline)
    return await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host) or existing, False
