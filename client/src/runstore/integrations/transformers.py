"""Hugging Face Transformers: ``RunstoreCallback``, a ``TrainerCallback`` (``pip install 'runstore[transformers]'``).

    from transformers import Trainer, TrainingArguments
    from runstore.integrations.transformers import RunstoreCallback

    args = TrainingArguments("out", report_to="none", logging_steps=10)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                      callbacks=[RunstoreCallback(project="acme/nlp", name="bert-ft", log_model=True)])
    trainer.train()

Fields, under ``prefix`` (default ``training``): ``args/…`` (the ``TrainingArguments``; secrets are
masked by Transformers), ``model_config/…`` (the model's config), ``model/total_parameters``,
``train/<name>`` and ``eval/<name>`` (``test/<name>``) float series from ``Trainer.log`` stepped by the
global step (``eval_loss`` becomes ``eval/loss``), and with ``log_model`` the final model saved by
``save_pretrained`` (with the tokenizer or processor when the trainer has one) as the file set
``model/files``.
"""

from __future__ import annotations

import tempfile
from typing import Any

from transformers import TrainerCallback

import runstore

from ._common import RunHolder, as_number, log_params

__all__ = ["RunstoreCallback"]


class RunstoreCallback(TrainerCallback):
    """Logs a ``Trainer`` run to a Runstore run (``run``, or one started with ``init_run(**init_kwargs)``)."""

    def __init__(
        self,
        run: runstore.Run | None = None,
        *,
        prefix: str = "training",
        log_model: bool = False,
        **init_kwargs: Any,
    ) -> None:
        self._holder = RunHolder(run, prefix, init_kwargs)
        self._log_model = log_model

    @property
    def run(self) -> runstore.Run:
        return self._holder.run

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        log_params(self._holder, "args", args.to_dict())
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            log_params(self._holder, "model_config", config.to_dict())
        if model is not None and hasattr(model, "parameters"):
            self._holder.handler("model/total_parameters").assign(sum(int(p.numel()) for p in model.parameters()))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        for key, value in (logs or {}).items():
            if as_number(value) is None:
                continue
            for split in ("eval", "test"):
                if key.startswith(f"{split}_"):
                    name = f"{split}/{key[len(split) + 1 :]}"
                    break
            else:
                name = f"train/{key}"
            self._holder.append(name, value, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._log_model and model is not None:
            with tempfile.TemporaryDirectory(prefix="runstore-model-") as folder:
                model.save_pretrained(folder)
                for name in ("processing_class", "tokenizer"):
                    processor = kwargs.get(name)
                    if processor is not None and hasattr(processor, "save_pretrained"):
                        processor.save_pretrained(folder)
                        break
                self._holder.handler("model/files").upload_files(folder, replace=True)
                self._holder.flush()  # the files are read before the folder goes
            return
        self._holder.flush()
