"""Hugging Face Transformers: RunstoreCallback logs the training arguments, train/eval metrics at the
global step and, on request, the final model; read back from the server."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import runstore  # noqa: E402
from runstore.integrations.transformers import RunstoreCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # older Transformers / Accelerate releases on the newest torch and Python
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
    "ignore::UserWarning",
)


class Pairs(torch.utils.data.Dataset):
    """Sequences of 8 token ids; the label says whether token 3 is in the first half."""

    def __init__(self, count: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(4, 30, (count, 8), generator=generator)
        self.ids[: count // 2, 1] = 3
        self.labels = (self.ids[:, :4] == 3).any(dim=1).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def arguments(tmp_path, **overrides):
    options = {
        "output_dir": str(tmp_path / "out"),
        "num_train_epochs": 2,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 7,
    }
    options.update(overrides)
    return transformers.TrainingArguments(**options)


def test_trainer_callback_records_arguments_metrics_and_the_final_model(init_kwargs, read_run, tmp_path):
    callback = RunstoreCallback(**init_kwargs, name="bert-tiny", log_model=True)
    model = tiny_bert()
    trainer = transformers.Trainer(
        model=model,
        args=arguments(tmp_path),
        train_dataset=Pairs(32, 1),
        eval_dataset=Pairs(16, 2),
        callbacks=[callback],
    )
    trainer.train()
    run_id = callback.run["sys/id"].fetch()
    callback.run.stop()

    run = read_run(run_id)
    assert run["training/args/learning_rate"].fetch() == pytest.approx(5e-3)
    assert run["training/args/num_train_epochs"].fetch() == 2
    assert run["training/args/seed"].fetch() == 7
    assert run["training/model_config/hidden_size"].fetch() == 16
    assert run["training/model/total_parameters"].fetch() == sum(p.numel() for p in model.parameters())

    loss = run["training/train/loss"].fetch_values()
    assert list(loss["step"]) == list(range(1, trainer.state.global_step + 1))  # 4 steps × 2 epochs, logged each step
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert list(loss["value"]) == pytest.approx(logged)
    eval_loss = run["training/eval/loss"].fetch_values()
    assert list(eval_loss["step"]) == [4, 8]
    assert run.exists("training/train/learning_rate") and run.exists("training/train/train_runtime")

    files = {f["path"] if "path" in f else f["name"] for f in run["training/model/files"].fetch_files_list()}
    assert "config.json" in files
    folder = run["training/model/files"].download(tmp_path / "model")
    reloaded = transformers.BertForSequenceClassification.from_pretrained(folder)
    for (name, mine), (_, theirs) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name


def test_trainer_callback_uploads_no_model_unless_asked(init_kwargs, read_run, tmp_path):
    with runstore.init_run(**init_kwargs) as run:
        trainer = transformers.Trainer(
            model=tiny_bert(),
            args=arguments(tmp_path, num_train_epochs=1, eval_strategy="no"),
            train_dataset=Pairs(16, 1),
            callbacks=[RunstoreCallback(run, prefix="hf")],
        )
        trainer.train()
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    assert len(read["hf/train/loss"].fetch_values()) == 2
    assert not read.exists("hf/model/files")
