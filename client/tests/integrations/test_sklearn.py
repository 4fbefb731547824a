"""scikit-learn: log_estimator logs the estimator's parameters, its metrics, a confusion-matrix image for
classifiers and the fitted model; read back from the server."""

from __future__ import annotations

import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import runstore  # noqa: E402
from runstore.integrations.sklearn import log_estimator  # noqa: E402


def test_classifier_params_metrics_confusion_matrix_and_model_arrive(init_kwargs, read_run, tmp_path):
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(C=0.5, max_iter=500).fit(x_train, y_train)
    with runstore.init_run(**init_kwargs) as run:
        metrics = log_estimator(run, model, x_test, y_test)
        run_id = run["sys/id"].fetch()

    read = read_run(run_id)
    assert read["model/class"].fetch() == "sklearn.linear_model._logistic.LogisticRegression"
    assert read["model/params/C"].fetch() == 0.5
    assert read["model/params/max_iter"].fetch() == 500
    accuracy = accuracy_score(y_test, model.predict(x_test))
    assert read["model/metrics/accuracy"].fetch() == pytest.approx(accuracy) == pytest.approx(metrics["accuracy"])
    assert read["model/metrics/log_loss"].fetch() > 0
    assert set(read["model/metrics"].fetch()) >= {"f1_macro", "precision_macro", "recall_macro", "balanced_accuracy"}
    assert read["model/labels"].fetch() == "['0', '1', '2']"
    matrix = eval(read["model/confusion_matrix_values"].fetch())  # noqa: S307 - our own repr of a list
    assert np.trace(matrix) == round(accuracy * len(y_test)) and np.sum(matrix) == len(y_test)

    image = read["model/confusion_matrix"].download(tmp_path / "cm.png")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(image) as png:
        assert png.size[0] >= 300 and png.size[1] >= 300

    pickled = read["model/pickle"].download(tmp_path / "model.pkl")
    reloaded = joblib.load(pickled)
    assert (reloaded.predict(x_test) == model.predict(x_test)).all()


def test_regressor_pipeline_metrics_without_the_model(init_kwargs, read_run):
    x, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), LinearRegression()).fit(x[:300], y[:300])
    with runstore.init_run(**init_kwargs) as run:
        log_estimator(run, model, x[300:], y[300:], prefix="reg", log_model=False)
        run_id = run["sys/id"].fetch()
    read = read_run(run_id)
    assert read["reg/class"].fetch() == "sklearn.pipeline.Pipeline"
    assert read["reg/params/linearregression__fit_intercept"].fetch() is True
    assert "StandardScaler" in read["reg/params/standardscaler"].fetch()
    assert read["reg/metrics/r2"].fetch() == pytest.approx(r2_score(y[300:], model.predict(x[300:])))
    assert read["reg/metrics/rmse"].fetch() == pytest.approx(read["reg/metrics/mse"].fetch() ** 0.5)
    assert not read.exists("reg/pickle") and not read.exists("reg/confusion_matrix")
