"""PyTorch Lightning: ``RunstoreLogger``, a ``lightning.pytorch`` logger (``pip install 'runstore[lightning]'``).

    from lightning.pytorch import Trainer
    from runstore.integrations.lightning import RunstoreLogger

    logger = RunstoreLogger(project="acme/vision", name="resnet18")
    Trainer(max_epochs=10, logger=logger).fit(model, datamodule)

Fields, under ``prefix`` (default ``training``): ``hyperparams/…`` (what ``save_hyperparameters`` saved),
``metrics/<name>`` float series stepped by the trainer's global step, ``model/summary`` (Lightning's
``ModelSummary`` text), ``model/checkpoints/<file stem>`` (each checkpoint file the ``ModelCheckpoint``
callback writes, when ``log_checkpoints``) with ``model/best_model_path`` and ``model/best_model_score``.
"""

from __future__ import annotations

import uuid
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

import runstore

from ._common import RunHolder, as_number, log_params

__all__ = ["RunstoreLogger"]


class RunstoreLogger(Logger):
    """Logs a Lightning training to a Runstore run (``run``, or one started with ``init_run(**init_kwargs)``)."""

    def __init__(
        self,
        run: runstore.Run | None = None,
        *,
        prefix: str = "training",
        log_checkpoints: bool = True,
        summary_max_depth: int = -1,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._holder = RunHolder(run, prefix, init_kwargs)
        self._log_checkpoints = log_checkpoints
        self._summary_max_depth = summary_max_depth
        self._uploaded: set[str] = set()
        self._version: str | None = None

    # -- the Logger interface -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return "runstore"

    @property
    def version(self) -> str:
        """The run's id (``sys/id``), e.g. ``VIS-42``; Lightning uses it in the checkpoint folder's path.
        While the server has not answered (``RUNSTORE_FETCH_TIMEOUT``) a local name stands in, so the
        training never waits on the tracker nor fails for it."""
        if self._version is None:
            try:
                self._version = str(self.run["sys/id"].fetch())
            except runstore.RunstoreError:  # one name for the whole training: it names a folder
                self._version = f"local-{uuid.uuid4().hex[:8]}"
        return self._version

    @property
    def experiment(self) -> runstore.Run:
        """The Runstore run, for logging anything else: ``trainer.logger.experiment["eval/images"].append(img)``."""
        return self.run

    @property
    def run(self) -> runstore.Run:
        return self._holder.run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        log_params(self._holder, "hyperparams", dict(params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            if as_number(value) is not None:
                self._holder.append(f"metrics/{key}", value, step)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning calls this once at the start of fitting: the model summary goes to ``model/summary``."""
        from lightning.pytorch.utilities.model_summary import ModelSummary

        summary = ModelSummary(model, max_depth=self._summary_max_depth)
        self._holder.handler("model/summary").assign(str(summary))
        self._holder.handler("model/total_parameters").assign(int(summary.total_parameters))
        self._holder.handler("model/trainable_parameters").assign(int(summary.trainable_parameters))

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if not self._log_checkpoints:
            return
        paths = [
            getattr(checkpoint_callback, "last_model_path", ""),
            getattr(checkpoint_callback, "best_model_path", ""),
        ]
        paths += list(getattr(checkpoint_callback, "best_k_models", {}) or {})
        for name in dict.fromkeys(str(p) for p in paths if p):
            path = Path(name)
            if path.is_file() and (name not in self._uploaded or path.name.startswith("last")):
                self._holder.handler("model/checkpoints", path.stem).upload(path)
                self._uploaded.add(name)
        best = getattr(checkpoint_callback, "best_model_path", "")
        if best:
            self._holder.handler("model/best_model_path").assign(str(best))
            score = as_number(getattr(checkpoint_callback, "best_model_score", None))
            if score is not None:
                self._holder.handler("model/best_model_score").assign(score)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._holder.started:
            return
        if status == "failed":
            self.run.fail("Lightning reported the training failed")
        self._holder.flush()
