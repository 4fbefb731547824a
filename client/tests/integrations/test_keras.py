"""Keras 3 (torch backend): RunstoreCallback logs fit parameters, per-epoch and per-batch metrics and the
model summary; read back from the server."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from runstore.integrations.keras import RunstoreCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # old Keras releases on the newest torch, numpy and Python
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
    "ignore::UserWarning:keras",
)


def tiny_model():
    model = keras.Sequential(
        [keras.Input(shape=(4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


def test_keras_callback_records_params_metrics_and_summary(init_kwargs, read_run):
    assert keras.backend.backend() == "torch"
    callback = RunstoreCallback(**init_kwargs, name="keras-tiny", params={"dataset": "synthetic"})
    x, y = data()
    history = tiny_model().fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[callback])
    run_id = callback.run["sys/id"].fetch()
    callback.run.stop()

    run = read_run(run_id)
    params = run["training/params"].fetch()
    assert params["epochs"] == 3 and params["steps"] == 3 and params["dataset"] == "synthetic"
    assert run["training/optimizer/learning_rate"].fetch() == pytest.approx(0.01)
    summary = run["training/model/summary"].fetch()
    assert "dense" in summary.lower() and "Total params" in summary
    assert run["training/model/total_parameters"].fetch() == 4 * 8 + 8 + 8 * 3 + 3

    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        values = run[f"training/epoch/{name}"].fetch_values()
        assert list(values["step"]) == [0, 1, 2]
        assert list(values["value"]) == pytest.approx(history.history[name])
    batches = run["training/batch/loss"].fetch_values()
    assert list(batches["step"]) == list(range(9))  # 3 batches of 16 out of 45 training rows, 3 epochs


def test_keras_callback_without_batches_logs_epochs_only(init_kwargs, read_run):
    import runstore

    with runstore.init_run(**init_kwargs) as run:
        x, y = data()
        tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[RunstoreCallback(run, prefix="k", log_batches=False)])
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    assert len(read["k/epoch/loss"].fetch_values()) == 2
    assert not read.exists("k/batch/loss")
