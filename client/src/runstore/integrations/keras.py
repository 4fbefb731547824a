"""Keras 3: ``RunstoreCallback`` (``pip install 'runstore[keras]'``; any Keras backend).

    from runstore.integrations.keras import RunstoreCallback

    model.fit(x, y, epochs=10, validation_split=0.2,
              callbacks=[RunstoreCallback(project="acme/vision", name="cnn")])

Fields, under ``prefix`` (default ``training``): ``params/…`` (Keras' fit parameters: epochs, steps,
verbose, plus ``params`` given to the callback), ``optimizer/…`` (the optimizer's config),
``model/summary`` (``model.summary()`` text), ``model/total_parameters``, ``epoch/<metric>`` float
series stepped by the epoch (validation metrics as ``epoch/val_<metric>``) and, when ``log_batches``,
``batch/<metric>`` series stepped by the global batch number.
"""

from __future__ import annotations

from typing import Any

import keras

import runstore

from ._common import RunHolder, log_params

__all__ = ["RunstoreCallback"]


class RunstoreCallback(keras.callbacks.Callback):
    """Logs ``model.fit`` to a Runstore run (``run``, or one started with ``init_run(**init_kwargs)``)."""

    def __init__(
        self,
        run: runstore.Run | None = None,
        *,
        prefix: str = "training",
        log_batches: bool = True,
        params: dict[str, Any] | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._holder = RunHolder(run, prefix, init_kwargs)
        self._log_batches = log_batches
        self._extra_params = params or {}
        self._batch_step = 0

    @property
    def run(self) -> runstore.Run:
        return self._holder.run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        log_params(self._holder, "params", {**(self.params or {}), **self._extra_params})
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            try:
                config = optimizer.get_config()
            except (NotImplementedError, TypeError, ValueError):
                config = {"name": type(optimizer).__name__}
            log_params(self._holder, "optimizer", config)
        lines: list[str] = []
        try:
            model.summary(print_fn=lambda line, *args, **kwargs: lines.append(str(line)))
        except ValueError:  # a subclassed model that has not been built yet has no summary
            lines = []
        if lines:
            self._holder.handler("model/summary").assign("\n".join(lines))
        if getattr(model, "built", False):
            self._holder.handler("model/total_parameters").assign(int(model.count_params()))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._log_batches:
            for key, value in (logs or {}).items():
                self._holder.append(f"batch/{key}", value, self._batch_step)
        self._batch_step += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self._holder.append(f"epoch/{key}", value, epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._holder.flush()
