"""scikit-learn: ``log_estimator`` (``pip install 'runstore[sklearn]'``).

    from sklearn.linear_model import LogisticRegression
    from runstore.integrations.sklearn import log_estimator

    model = LogisticRegression(C=0.5).fit(x_train, y_train)
    with runstore.init_run(project="acme/tabular") as run:
        log_estimator(run, model, x_test, y_test)

Fields, under ``prefix`` (default ``model``): ``class`` (the estimator's class), ``params/…``
(``get_params()``; nested estimators as their text), ``metrics/…`` on the data given (classifiers:
accuracy, balanced accuracy, macro precision/recall/F1, log loss with ``predict_proba``; regressors:
R², MAE, MSE, RMSE), ``confusion_matrix`` (a PNG drawn with matplotlib) with ``confusion_matrix_values``
and ``labels`` for classifiers, and ``pickle`` (the fitted estimator, ``joblib.dump``), unless
``log_model=False``.
"""

from __future__ import annotations

import io
import math
from typing import Any

import runstore

from ._common import RunHolder, log_params

__all__ = ["log_estimator"]


def log_estimator(
    run: runstore.Run,
    estimator: Any,
    x: Any = None,
    y: Any = None,
    *,
    prefix: str = "model",
    log_model: bool = True,
    confusion_matrix: bool = True,
) -> dict[str, float]:
    """Log a fitted estimator: its parameters, its metrics on ``x``/``y`` (when given), a confusion-matrix
    image for classifiers and the pickled estimator. Returns the metrics."""
    from sklearn.base import is_classifier, is_regressor

    holder = RunHolder(run, prefix, {})
    cls = type(estimator)
    holder.handler("class").assign(f"{cls.__module__}.{cls.__qualname__}")
    log_params(holder, "params", estimator.get_params())

    metrics: dict[str, float] = {}
    if x is not None and y is not None:
        predictions = estimator.predict(x)
        if is_classifier(estimator):
            metrics = _classifier_metrics(estimator, x, y, predictions)
            if confusion_matrix:
                _log_confusion_matrix(holder, estimator, y, predictions)
        elif is_regressor(estimator):
            metrics = _regressor_metrics(y, predictions)
        if metrics:
            holder.handler("metrics").assign(metrics)

    if log_model:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(estimator, buffer)
        holder.handler("pickle").upload(
            runstore.File(content=buffer.getvalue(), name="model.pkl", mime_type="application/octet-stream")
        )
    return metrics


def _classifier_metrics(estimator: Any, x: Any, y: Any, predictions: Any) -> dict[str, float]:
    from sklearn import metrics as m

    scores = {
        "accuracy": m.accuracy_score(y, predictions),
        "balanced_accuracy": m.balanced_accuracy_score(y, predictions),
        "precision_macro": m.precision_score(y, predictions, average="macro", zero_division=0),
        "recall_macro": m.recall_score(y, predictions, average="macro", zero_division=0),
        "f1_macro": m.f1_score(y, predictions, average="macro", zero_division=0),
    }
    if hasattr(estimator, "predict_proba"):
        scores["log_loss"] = m.log_loss(y, estimator.predict_proba(x), labels=estimator.classes_)
    return {k: float(v) for k, v in scores.items()}


def _regressor_metrics(y: Any, predictions: Any) -> dict[str, float]:
    from sklearn import metrics as m

    mse = float(m.mean_squared_error(y, predictions))
    return {
        "r2": float(m.r2_score(y, predictions)),
        "mae": float(m.mean_absolute_error(y, predictions)),
        "mse": mse,
        "rmse": math.sqrt(mse),
    }


def _log_confusion_matrix(holder: RunHolder, estimator: Any, y: Any, predictions: Any) -> None:
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    labels = list(getattr(estimator, "classes_", [])) or sorted(set(y) | set(predictions))
    matrix = confusion_matrix(y, predictions, labels=labels)
    names = [str(label) for label in labels]
    holder.handler("labels").assign(repr(names))
    holder.handler("confusion_matrix_values").assign(repr(matrix.tolist()))

    size = 2.5 + 0.45 * len(names)
    figure = Figure(figsize=(size, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > threshold else "black"
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=45 if len(names) > 6 else 0)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix")
    figure.tight_layout()
    holder.handler("confusion_matrix").upload(runstore.File.as_image(figure, name="confusion_matrix.png"))
