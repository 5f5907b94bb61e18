"""Generator pipelines and plain steps on top of the Resonate SDK.

``pipeline`` declares a pipeline; ``Context`` is what it receives; steps are plain
functions that may ask for ``StepInfo`` or any registered dependency by type.
"""

from app.durable.context import Context, StepCall, WaitDefaults
from app.durable.errors import StepError
from app.durable.pipeline import REGISTRY, SERVER_ONLY, Pipeline, drive, pipeline
from app.durable.run_meta import ANONYMOUS, RunMeta
from app.durable.step import StepInfo, StepRetry

__all__ = [
    "ANONYMOUS",
    "RunMeta",
    "REGISTRY",
    "SERVER_ONLY",
    "Context",
    "Pipeline",
    "StepCall",
    "StepError",
    "StepInfo",
    "StepRetry",
    "WaitDefaults",
    "drive",
    "pipeline",
]
