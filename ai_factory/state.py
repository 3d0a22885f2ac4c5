"""Where the factory keeps local state on a developer's machine: one folder and one MLflow store.

The local gateway's database, the prompt registry, the model registry and eval runs all live in
``$AI_FACTORY_HOME`` (default ``~/.ai-factory``); MLflow uses ``$MLFLOW_TRACKING_URI`` when set.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "AI_FACTORY_HOME"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MLFLOW_DB_FILE = "mlflow.db"


def default_state_dir() -> Path:
    """``$AI_FACTORY_HOME`` if set, else ``~/.ai-factory``."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".ai-factory"


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<state folder>/mlflow.db`` (creates the folder)."""
    uri = os.environ.get(TRACKING_URI_ENV)
    if uri:
        return uri
    state = default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state / MLFLOW_DB_FILE).resolve()}"
