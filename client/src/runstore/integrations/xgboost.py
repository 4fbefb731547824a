"""XGBoost: ``RunstoreCallback``, a training callback (``pip install 'runstore[xgboost]'``).

    import xgboost as xgb
    from runstore.integrations.xgboost import RunstoreCallback

    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}
    xgb.train(params, dtrain, num_boost_round=50, evals=[(dtrain, "train"), (dvalid, "valid")],
              callbacks=[RunstoreCallback(project="acme/tabular", params=params)])

Also with the scikit-learn API: ``XGBClassifier(callbacks=[RunstoreCallback(...)])``.

Fields, under ``prefix`` (default ``training``): ``parameters/…`` (the ``params`` given to the callback),
``config/…`` (the booster's whole configuration, as XGBoost reports it), ``<data>/<metric>`` float series
stepped by the boosting round (``valid/logloss``), ``best_iteration`` / ``best_score`` with early
stopping, ``feature_importance/<type>/<feature>`` (``importance_types``, default weight and gain) and
``model`` (the booster as a file, ``model_format`` ``json`` or ``ubj``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import xgboost

import runstore

from ._common import RunHolder, log_params

__all__ = ["RunstoreCallback"]


class RunstoreCallback(xgboost.callback.TrainingCallback):
    """Logs a boosting run to a Runstore run (``run``, or one started with ``init_run(**init_kwargs)``)."""

    def __init__(
        self,
        run: runstore.Run | None = None,
        *,
        prefix: str = "training",
        params: dict[str, Any] | None = None,
        log_model: bool = True,
        model_format: str = "json",
        importance_types: tuple[str, ...] = ("weight", "gain"),
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if model_format not in ("json", "ubj"):
            raise ValueError("model_format must be 'json' or 'ubj'")
        self._holder = RunHolder(run, prefix, init_kwargs)
        self._params = params or {}
        self._log_model = log_model
        self._model_format = model_format
        self._importance_types = importance_types

    @property
    def run(self) -> runstore.Run:
        return self._holder.run

    def before_training(self, model: Any) -> Any:
        log_params(self._holder, "parameters", self._params)
        try:
            log_params(self._holder, "config", json.loads(model.save_config()))
        except (AttributeError, ValueError):  # a model that has no booster config (never the case in 2.x)
            pass
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, Any]]) -> bool:
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if history:
                    value = history[-1]
                    if isinstance(value, tuple):  # xgb.cv: (mean, std)
                        value = value[0]
                    self._holder.append(f"{data}/{metric}", value, epoch)
        return False

    def after_training(self, model: Any) -> Any:
        for attribute in ("best_iteration", "best_score"):
            value = model.attr(attribute)
            if value is not None:
                self._holder.handler(attribute).assign(float(value) if "." in value else int(value))
        for kind in self._importance_types:
            scores = model.get_score(importance_type=kind)
            if scores:
                log_params(self._holder, f"feature_importance/{kind}", scores)
        if self._log_model:
            with tempfile.TemporaryDirectory(prefix="runstore-xgboost-") as folder:
                path = Path(folder) / f"model.{self._model_format}"
                model.save_model(str(path))
                self._holder.handler("model").upload(path)
                self._holder.flush()  # the file is read before the folder goes
        else:
            self._holder.flush()
        return model
