"""PyTorch Lightning: RunstoreLogger logs hyper-parameters, metrics at the trainer's step, the model summary
and checkpoint files; read back from the server."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from runstore.integrations.lightning import RunstoreLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # Lightning's advice about data-loader workers and logging intervals on a 4-batch toy dataset
    "ignore::UserWarning:lightning",
    "ignore::UserWarning:pytorch_lightning",
    "ignore:.*does not have many workers.*",
    "ignore:.*number of training batches.*",
    # old Lightning releases on the newest torch and Python
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
)


class TinyRegressor(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.1, layers: tuple[int, ...] = (8, 4), note: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=8), DataLoader(data, batch_size=16)


def test_lightning_logger_records_hyperparams_metrics_summary_and_checkpoints(init_kwargs, read_run, tmp_path):
    logger = RunstoreLogger(**init_kwargs, name="lightning-tiny")
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1, save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=logger,
        callbacks=[checkpoints],
        log_every_n_steps=1,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    train, val = loaders()
    trainer.fit(TinyRegressor(hidden=8, lr=0.1), train, val)
    run_id = logger.version
    logger.run.stop()

    run = read_run(run_id)
    assert run["sys/name"].fetch() == "lightning-tiny"
    assert run["sys/state"].fetch() == "finished"
    assert run["training/hyperparams"].fetch() == {"hidden": 8, "lr": 0.1, "layers": "(8, 4)", "note": "None"}

    train_loss = run["training/metrics/train_loss"].fetch_values()
    assert list(train_loss["step"]) == list(range(trainer.global_step))  # 4 batches × 3 epochs, the trainer's steps
    assert train_loss["value"].iloc[-1] < train_loss["value"].iloc[0]
    val_loss = run["training/metrics/val_loss"].fetch_values()
    assert len(val_loss) == 3 and list(val_loss["step"]) == sorted(val_loss["step"])
    assert list(run["training/metrics/epoch"].fetch_values()["value"])[-1] == 2

    summary = run["training/model/summary"].fetch()
    assert "Sequential" in summary and "Total params" in summary
    assert run["training/model/total_parameters"].fetch() == 3 * 8 + 8 + 8 + 1

    best = checkpoints.best_model_path
    assert run["training/model/best_model_path"].fetch() == best
    assert run["training/model/best_model_score"].fetch() == pytest.approx(float(checkpoints.best_model_score))
    from pathlib import Path

    for local in (Path(best), Path(checkpoints.last_model_path)):
        downloaded = run[f"training/model/checkpoints/{local.stem}"].download(tmp_path / "down" / local.name)
        assert downloaded.read_bytes() == local.read_bytes()
        assert "state_dict" in torch.load(downloaded, weights_only=False)


def test_lightning_logger_writes_into_a_run_given_to_it(init_kwargs, read_run, tmp_path):
    import runstore

    with runstore.init_run(**init_kwargs) as run:
        run["notes"] = "mine"
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            logger=RunstoreLogger(run, prefix="fit", log_checkpoints=False),
            enable_checkpointing=False,
            log_every_n_steps=1,
            enable_progress_bar=False,
            default_root_dir=tmp_path,
        )
        train, _ = loaders()
        trainer.fit(TinyRegressor(), train)
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    assert read["notes"].fetch() == "mine"
    assert len(read["fit/metrics/train_loss"].fetch_values()) == 4
    assert not read.exists("fit/model/checkpoints")


class Diverging(TinyRegressor):
    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            raise FloatingPointError("loss is nan")
        return super().training_step(batch, batch_idx)


def test_lightning_logger_marks_the_run_failed_when_training_fails(init_kwargs, read_run, tmp_path):
    logger = RunstoreLogger(**init_kwargs)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=logger,
        enable_checkpointing=False,
        log_every_n_steps=1,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    train, _ = loaders()
    with pytest.raises(FloatingPointError):
        trainer.fit(Diverging(), train)
    run_id = logger.version
    logger.run.stop()
    run = read_run(run_id)
    assert run["sys/state"].fetch() == "failed"
    assert len(run["training/metrics/train_loss"].fetch_values()) == 2
