"""Plain PyTorch loops: ``log_model_summary`` and ``ModelWatcher`` (``pip install 'runstore[torch]'``).

    from runstore.integrations.torch import ModelWatcher, log_model_summary

    log_model_summary(run, model)
    watcher = ModelWatcher(run, model, every_n_steps=50)
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y); loss.backward()
        watcher.step(step)            # after backward(), before optimizer.zero_grad()
        optimizer.step(); optimizer.zero_grad()

Fields, under ``prefix`` (default ``model``): ``summary`` (the module's repr), ``total_parameters``,
``trainable_parameters``; float series ``grad_norm/total`` and ``weight_norm/total`` (L2 over all
parameters) and, with ``per_parameter``, ``grad_norm/<name>`` / ``weight_norm/<name>`` per parameter.
"""

from __future__ import annotations

import math
from typing import Any

import runstore

from ._common import RunHolder

__all__ = ["ModelWatcher", "log_model_summary"]


def log_model_summary(run: runstore.Run, model: Any, *, prefix: str = "model") -> None:
    """The module's structure and its parameter counts."""
    holder = RunHolder(run, prefix, {})
    parameters = list(model.parameters())
    holder.handler("summary").assign(repr(model))
    holder.handler("total_parameters").assign(sum(int(p.numel()) for p in parameters))
    holder.handler("trainable_parameters").assign(sum(int(p.numel()) for p in parameters if p.requires_grad))


class ModelWatcher:
    """Gradient and weight L2 norms of a module every ``every_n_steps`` calls of :meth:`step`."""

    def __init__(
        self,
        run: runstore.Run,
        model: Any,
        *,
        every_n_steps: int = 50,
        log: str = "all",
        per_parameter: bool = False,
        prefix: str = "model",
    ) -> None:
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be 1 or more")
        if log not in ("gradients", "weights", "all"):
            raise ValueError("log must be 'gradients', 'weights' or 'all'")
        self._holder = RunHolder(run, prefix, {})
        self._model = model
        self._every = every_n_steps
        self._log = log
        self._per_parameter = per_parameter
        self._calls = 0

    def step(self, step: int | None = None) -> bool:
        """Count a training step; on every ``every_n_steps``-th (the first included) log the norms at
        ``step`` (default: the number of calls so far). Returns whether it logged."""
        call = self._calls
        self._calls += 1
        if call % self._every:
            return False
        at = call if step is None else step
        import torch

        with torch.no_grad():
            for kind in ("gradients", "weights"):
                if self._log not in (kind, "all"):
                    continue
                name = "grad_norm" if kind == "gradients" else "weight_norm"
                total = 0.0
                seen = False
                for param_name, param in self._model.named_parameters():
                    tensor = param.grad if kind == "gradients" else param
                    if tensor is None:
                        continue
                    norm = float(tensor.detach().float().norm(2))
                    total += norm * norm
                    seen = True
                    if self._per_parameter:
                        self._holder.append(f"{name}/{param_name}", norm, at)
                if seen:
                    self._holder.append(f"{name}/total", math.sqrt(total), at)
        return True
