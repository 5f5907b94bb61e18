"""Where notebooks call back a DARA that runs as a Databricks App: the App's own URL.

Notebooks call back ``DARA_PUBLIC_URL``. As a Databricks App, DARA is reached only
through the Apps proxy, at the App's URL (``https://<app>-<workspace id>.<region>.
databricksapps.com``). The Apps runtime does not pass that URL in the environment, and it
differs per workspace and per bundle target, so ``app.yaml`` cannot carry it either. So
when ``DARA_PUBLIC_URL`` is unset inside the Apps runtime, DARA asks the workspace for its
own App (``apps.get``, as the App's service principal) once, before it starts serving.
"""

from __future__ import annotations

import os

from databricks.sdk.errors import DatabricksError

from app.settings import Settings, running_as_databricks_app
from app.workspace.client import workspace_client


class AppUrlUnknown(RuntimeError):
    """DARA runs as a Databricks App and cannot tell where notebooks should call it back."""


def with_app_url(settings: Settings) -> Settings:
    """``settings`` with ``public_url`` set to the App's URL, where it is unset and DARA
    runs as a Databricks App; unchanged otherwise."""
    if settings.public_url or not running_as_databricks_app() or settings.uses_embedded_workspace:
        return settings
    name = os.environ["DATABRICKS_APP_NAME"]
    how = f"set DARA_PUBLIC_URL to the App's URL (`databricks apps get {name}` shows it)"
    try:
        url = workspace_client(settings, None).apps.get(name).url
    except (DatabricksError, OSError, ValueError) as exc:
        msg = f"cannot look up the URL of Databricks App {name!r} ({type(exc).__name__}: {exc}); {how}"
        raise AppUrlUnknown(msg) from None
    if not url:
        msg = f"Databricks App {name!r} has no URL yet; {how}"
        raise AppUrlUnknown(msg)
    return settings.model_copy(update={"public_url": url.rstrip("/")})
