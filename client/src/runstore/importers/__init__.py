"""``runstore import SOURCE ...``: bring runs of other trackers into Runstore, over the public API.

    runstore import tensorboard ./runs --project acme/vision
    runstore import mlflow --uri ./mlruns --workspace acme           # each experiment -> a project
    runstore import wandb ./wandb --project acme/nlp
    runstore import neptune ./exports --workspace acme               # neptune-exporter's parquet + files

Every importer is idempotent (see ``core``): importing again adds nothing, and an interrupted
import continues where it stopped. Each reads its source with the source's own library, an extra
of the client (``pip install 'runstore[tensorboard]'``, ``[mlflow]``, ``[wandb]``, ``[neptune]``)."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

from ..config import make_api
from ..exceptions import ConfigurationError
from .core import SourceRun, Summary, import_runs

__all__ = ["SourceRun", "Summary", "add_parser", "import_source"]

SOURCES = ("tensorboard", "mlflow", "wandb", "neptune")


def import_source(
    source: str,
    location: str,
    *,
    project: str | None = None,
    workspace: str | None = None,
    url: str | None = None,
    api_token: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Summary:
    """Import ``location`` (a folder, or an MLflow tracking URI) of ``source`` (one of ``SOURCES``).

    ``project`` ('workspace/project') receives every run; ``workspace`` instead maps the source's own
    projects (MLflow experiments, W&B and Neptune projects) to projects of that name in it."""
    if source not in SOURCES:
        raise ConfigurationError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    project = project or (None if workspace else os.environ.get("RUNSTORE_PROJECT"))
    if project is not None and project.count("/") != 1:
        raise ConfigurationError(f"project={project!r}; expected 'workspace/project'")
    if project is None and not workspace:
        raise ConfigurationError("pass --project workspace/project (or --workspace, or set RUNSTORE_PROJECT)")
    api = make_api(url, api_token)
    reader = importlib.import_module(f".{source}", __name__)
    total, runs = reader.read_runs(location, project=project, workspace=workspace, **options)
    return import_runs(api, source, runs, total=total, progress=progress)


def add_parser(sub: Any) -> None:
    """The ``import`` command and its sources, for ``runstore.cli``."""
    parser = sub.add_parser(
        "import",
        help="import runs from TensorBoard, MLflow, W&B or neptune-exporter (idempotent, resumable)",
        description="Import runs of another tracker. Importing again adds nothing; an interrupted import "
        "continues. Exit status 0 ok, 1 some run failed (the summary says which and why).",
    )
    sources = parser.add_subparsers(dest="source", required=True)

    def common(p: argparse.ArgumentParser, *, mapping: bool) -> None:
        p.add_argument("--project", help="workspace/project receiving the runs (default: RUNSTORE_PROJECT)")
        if mapping:
            p.add_argument("--workspace", help="instead of --project: each source project becomes a project here")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_import)

    tb = sources.add_parser("tensorboard", help="TensorBoard event files: one run per run directory")
    tb.add_argument("location", metavar="DIR")
    common(tb, mapping=False)

    ml = sources.add_parser("mlflow", help="an MLflow tracking server or a local mlruns folder")
    ml.add_argument("--uri", dest="location", required=True, metavar="URI|PATH")
    ml.add_argument("--experiment", action="append", help="only this experiment (name or id; repeatable)")
    common(ml, mapping=True)

    wb = sources.add_parser("wandb", help="W&B offline run folders (wandb/offline-run-*)")
    wb.add_argument("location", metavar="DIR")
    common(wb, mapping=True)

    nep = sources.add_parser("neptune", help="neptune-exporter's output (parquet data + files)")
    nep.add_argument("location", metavar="DIR", help="the export folder (holding data/ and files/) or its data folder")
    nep.add_argument("--files-path", help="the files folder (default: DIR/files)")
    common(nep, mapping=True)


def _cmd_import(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    if getattr(args, "experiment", None):
        options["experiments"] = args.experiment
    if getattr(args, "files_path", None):
        options["files_path"] = Path(args.files_path)
    summary = import_source(
        args.source,
        args.location,
        project=args.project,
        workspace=getattr(args, "workspace", None),
        url=args.url,
        api_token=args.api_token,
        progress=False if args.no_progress else None,
        **options,
    )
    if not args.quiet or summary.runs_failed:
        summary.print()
    return 1 if summary.runs_failed else 0
