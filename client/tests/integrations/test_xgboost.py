"""XGBoost: RunstoreCallback logs parameters, per-round eval metrics, feature importance and the model
file; read back from the server."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
xgb = pytest.importorskip("xgboost")

import runstore  # noqa: E402
from runstore.integrations.xgboost import RunstoreCallback  # noqa: E402


def data(seed: int, rows: int = 200):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return xgb.DMatrix(x, label=y, feature_names=["a", "b", "c", "d"])


def test_xgboost_callback_records_params_metrics_importance_and_model(init_kwargs, read_run, tmp_path):
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "eval_metric": ["logloss", "error"]}
    callback = RunstoreCallback(**init_kwargs, name="xgb", params=params)
    train, valid = data(0), data(1)
    history: dict = {}
    booster = xgb.train(
        params,
        train,
        num_boost_round=6,
        evals=[(train, "train"), (valid, "valid")],
        evals_result=history,
        callbacks=[callback],
    )
    run_id = callback.run["sys/id"].fetch()
    callback.run.stop()

    run = read_run(run_id)
    assert run["training/parameters/max_depth"].fetch() == 2
    assert run["training/parameters/eval_metric"].fetch() == {"logloss", "error"}
    assert run["training/config/learner/objective/name"].fetch() == "binary:logistic"
    for data_name in ("train", "valid"):
        for metric in ("logloss", "error"):
            values = run[f"training/{data_name}/{metric}"].fetch_values()
            assert list(values["step"]) == list(range(6))
            assert list(values["value"]) == pytest.approx(history[data_name][metric])
    gain = run["training/feature_importance/gain"].fetch()
    assert gain == pytest.approx(booster.get_score(importance_type="gain"))
    assert gain["a"] > gain.get("c", 0.0)
    assert run["training/feature_importance/weight"].fetch()["a"] >= 1
    path = run["training/model"].download(tmp_path / "model.json")
    reloaded = xgb.Booster(model_file=str(path))
    assert np.allclose(reloaded.predict(valid), booster.predict(valid))


def test_xgboost_sklearn_api_with_early_stopping_records_the_best_iteration(init_kwargs, read_run):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    y = x[:, 0] * 2 + rng.normal(scale=0.1, size=300)
    with runstore.init_run(**init_kwargs) as run:
        model = xgb.XGBRegressor(
            n_estimators=200,
            max_depth=2,
            learning_rate=0.5,
            early_stopping_rounds=3,
            callbacks=[RunstoreCallback(run, prefix="xgb", log_model=False)],
        )
        model.fit(x[:200], y[:200], eval_set=[(x[200:], y[200:])], verbose=False)
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    best = model.get_booster().best_iteration
    assert read["xgb/best_iteration"].fetch() == best
    rounds = read["xgb/validation_0/rmse"].fetch_values()
    history = model.evals_result()["validation_0"]["rmse"]
    assert len(history) == best + 4  # the best round, then three without improvement
    # XGBoost stops calling the callbacks after the one that asks to stop: the last round may be missing
    assert len(rounds) in (len(history), len(history) - 1) and len(rounds) > best
    assert list(rounds["step"]) == list(range(len(rounds)))
    assert list(rounds["value"]) == pytest.approx(history[: len(rounds)])
    assert not read.exists("xgb/model")
