"""Generator pipelines and plain steps on top of the Resonate SDK.

``pipeline`` declares a pipeline; ``Context`` is what it receives; steps are plain
functions that may ask for ``StepInfo`` or a type provided in ``StepDependencies``.
"""

from app.durable.context import Context, StepCall, WaitDefaults, Watchers
from app.durable.errors import StepError
from app.durable.pipeline import SERVER_ONLY, Pipeline, catalog, drive, pipeline
from app.durable.retries import RetryPolicy
from app.durable.run_meta import ANONYMOUS, RunMeta
from app.durable.step import StepDependencies, StepDoubles, StepInfo

__all__ = [
    "ANONYMOUS",
    "SERVER_ONLY",
    "Context",
    "Pipeline",
    "RetryPolicy",
    "RunMeta",
    "StepCall",
    "StepDependencies",
    "StepDoubles",
    "StepError",
    "StepInfo",
    "WaitDefaults",
    "Watchers",
    "catalog",
    "drive",
    "pipeline",
]
