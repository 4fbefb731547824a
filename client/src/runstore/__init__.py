"""runstore: the Python client of Runstore, a self-hosted ML experiment tracker.

import runstore
with runstore.init_run(project="acme/vision") as run:
    run["parameters"] = {"lr": 0.01}
    run["train/loss"].append(0.42)
"""

from .exceptions import (
    ApiError,
    ConfigurationError,
    NetworkError,
    NotFoundError,
    QueryNotSupportedError,
    ReadOnlyError,
    RunstoreError,
)
from .file import File
from .handler import Handler
from .init import init_run
from .project import Project, Table, init_project
from .registry import download_model, get_model_version, register_model, set_model_stage
from .run import Run

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ConfigurationError",
    "File",
    "Handler",
    "NetworkError",
    "NotFoundError",
    "Project",
    "QueryNotSupportedError",
    "ReadOnlyError",
    "Run",
    "RunstoreError",
    "Table",
    "__version__",
    "download_model",
    "get_model_version",
    "init_project",
    "init_run",
    "register_model",
    "set_model_stage",
]
