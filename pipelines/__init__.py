"""DARA's pipelines: one module each. Defining a pipeline in a new module here is all it
takes to register it with the service and list it under ``GET /pipelines``."""

from __future__ import annotations

import importlib
import pkgutil

from app.durable import REGISTRY, Pipeline


def load() -> dict[str, Pipeline]:
    """Import every module of this package, so each ``@pipeline`` registers itself."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(REGISTRY)
