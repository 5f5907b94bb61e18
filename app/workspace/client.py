"""Building the ``WorkspaceClient``: databricks-sdk unified auth, or the embedded workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from app.settings import Settings

if TYPE_CHECKING:  # brickhouse comes with the `local` extra, which a Databricks App lacks
    from app.workspace.embedded import EmbeddedWorkspace


def workspace_client(settings: Settings, embedded: EmbeddedWorkspace | None) -> WorkspaceClient:
    """A client for the configured workspace.

    With ``DATABRICKS_HOST`` or a profile set, databricks-sdk's unified auth finds the
    credentials itself (token, OAuth, Azure CLI, ...). Otherwise the client points at
    the embedded workspace.
    """
    retry: dict[str, Any] = {"retry_timeout_seconds": settings.databricks_retry_timeout}
    if embedded is not None:
        from app.workspace.embedded import LOCAL_TOKEN

        return WorkspaceClient(config=Config(host=embedded.host, token=LOCAL_TOKEN, auth_type="pat", **retry))
    return WorkspaceClient(config=Config(host=settings.databricks_host, profile=settings.databricks_profile, **retry))
