"""LightGBM: ``RunstoreCallback``, a training callback (``pip install 'runstore[lightgbm]'``).

    import lightgbm as lgb
    from runstore.integrations.lightgbm import RunstoreCallback

    callback = RunstoreCallback(project="acme/tabular", name="gbm")
    booster = lgb.train(params, train, num_boost_round=100, valid_sets=[valid], valid_names=["valid"],
                        callbacks=[callback])
    callback.log_booster(booster)   # feature importance and the model file

Fields, under ``prefix`` (default ``training``): ``parameters/…`` (the training parameters, as LightGBM
resolved them), ``<data>/<metric>`` float series stepped by the boosting round (``valid/auc``);
``log_booster`` adds ``best_iteration``, ``feature_importance/<type>/<feature>`` (split and gain) and
``model`` (the text model file). LightGBM has no end-of-training hook, so the callback calls
``log_booster`` itself after the last round unless early stopping ended the training first: call it
after ``lgb.train`` (logging twice is harmless).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import runstore

from ._common import RunHolder, log_params

__all__ = ["RunstoreCallback"]


class RunstoreCallback:
    """Logs a LightGBM training to a Runstore run (``run``, or one started with ``init_run(**init_kwargs)``)."""

    # After LightGBM's own callbacks (record_evaluation 20, early_stopping 30), so an early stop raised
    # by them leaves the rounds logged so far intact.
    order = 40
    before_iteration = False

    def __init__(
        self,
        run: runstore.Run | None = None,
        *,
        prefix: str = "training",
        log_model: bool = True,
        importance_types: tuple[str, ...] = ("split", "gain"),
        **init_kwargs: Any,
    ) -> None:
        self._holder = RunHolder(run, prefix, init_kwargs)
        self._log_model = log_model
        self._importance_types = importance_types

    @property
    def run(self) -> runstore.Run:
        return self._holder.run

    def __call__(self, env: Any) -> None:
        if env.iteration == env.begin_iteration:
            log_params(self._holder, "parameters", dict(env.params))
        for entry in env.evaluation_result_list or []:
            data, metric, value = entry[0], entry[1], entry[2]
            if data == "cv_agg":  # lgb.cv: "valid auc"-style names, the mean over the folds
                data, _, metric = metric.partition(" ")
            self._holder.append(f"{data}/{metric}", value, env.iteration)
        if env.iteration + 1 >= env.end_iteration and hasattr(env.model, "feature_importance"):
            self.log_booster(env.model)

    def log_booster(self, booster: Any) -> None:
        """The trained booster's best iteration, feature importance and (with ``log_model``) the model file."""
        best = getattr(booster, "best_iteration", 0)
        if best:
            self._holder.handler("best_iteration").assign(int(best))
        names = booster.feature_name()
        for kind in self._importance_types:
            values = booster.feature_importance(importance_type=kind)
            log_params(self._holder, f"feature_importance/{kind}", dict(zip(names, values, strict=True)))
        if self._log_model:
            with tempfile.TemporaryDirectory(prefix="runstore-lightgbm-") as folder:
                path = Path(folder) / "model.txt"
                booster.save_model(str(path))
                self._holder.handler("model").upload(path)
                self._holder.flush()  # the file is read before the folder goes
        else:
            self._holder.flush()
