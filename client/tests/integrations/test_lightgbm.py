"""LightGBM: RunstoreCallback logs parameters, per-round eval metrics, feature importance and the model
file; read back from the server."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
lgb = pytest.importorskip("lightgbm")

import runstore  # noqa: E402
from runstore.integrations.lightgbm import RunstoreCallback  # noqa: E402


def dataset(seed: int, rows: int = 300, reference=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    return lgb.Dataset(x, label=y, feature_name=["a", "b", "c", "d"], reference=reference, free_raw_data=False), x, y


def test_lightgbm_callback_records_params_metrics_importance_and_model(init_kwargs, read_run, tmp_path):
    params = {"objective": "binary", "metric": ["auc", "binary_logloss"], "num_leaves": 4, "verbose": -1, "seed": 3}
    callback = RunstoreCallback(**init_kwargs, name="gbm")
    train, _, _ = dataset(0)
    valid, x_valid, _ = dataset(1, reference=train)
    history: dict = {}
    booster = lgb.train(
        params,
        train,
        num_boost_round=5,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[callback, lgb.record_evaluation(history)],
    )
    run_id = callback.run["sys/id"].fetch()
    callback.run.stop()

    run = read_run(run_id)
    assert run["training/parameters/num_leaves"].fetch() == 4
    assert run["training/parameters/objective"].fetch() == "binary"
    for metric in ("auc", "binary_logloss"):
        values = run[f"training/valid/{metric}"].fetch_values()
        assert list(values["step"]) == list(range(5))
        assert list(values["value"]) == pytest.approx(history["valid"][metric])
    split = run["training/feature_importance/split"].fetch()
    assert split == dict(zip(booster.feature_name(), booster.feature_importance("split").tolist(), strict=True))
    gain = run["training/feature_importance/gain"].fetch()
    assert gain["a"] > gain["b"]
    path = run["training/model"].download(tmp_path / "model.txt")
    assert np.allclose(lgb.Booster(model_file=str(path)).predict(x_valid), booster.predict(x_valid))


def test_lightgbm_early_stopping_then_log_booster(init_kwargs, read_run):
    params = {"objective": "regression", "num_leaves": 4, "learning_rate": 0.5, "verbose": -1}
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    y = 3 * x[:, 0] + rng.normal(scale=0.05, size=300)
    train = lgb.Dataset(x[:200], label=y[:200])
    valid = lgb.Dataset(x[200:], label=y[200:], reference=train)
    with runstore.init_run(**init_kwargs) as run:
        callback = RunstoreCallback(run, prefix="gbm")
        booster = lgb.train(
            params,
            train,
            num_boost_round=500,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(3, verbose=False), callback],
        )
        assert booster.best_iteration < 500
        callback.log_booster(booster)
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    assert read["gbm/best_iteration"].fetch() == booster.best_iteration
    assert len(read["gbm/valid_0/l2"].fetch_values()) == booster.best_iteration + 3
    assert read.exists("gbm/model") and read.exists("gbm/feature_importance/gain/Column_0")
