"""Train a small numpy MLP on scikit-learn's bundled digits (CPU, seconds) and log it with runstore.

RUNSTORE_URL=http://localhost:8000 RUNSTORE_API_TOKEN=... python train_digits.py --project alice/digits
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import runstore


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(
    project: str,
    epochs: int = 15,
    hidden: int = 64,
    lr: float = 0.1,
    batch_size: int = 64,
    seed: int = 0,
    **run_options,
) -> str:
    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.1, (64, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, 0.1, (hidden, 10))
    b2 = np.zeros(10)

    with runstore.init_run(project=project, name="digits-mlp", tags=["example", "numpy"], **run_options) as run:
        run["parameters"] = {
            "epochs": epochs,
            "hidden": hidden,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "optimizer": {"name": "sgd", "momentum": 0.0},
        }
        run["data/version"] = "sklearn-digits"
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "x_train.npy", x_train)
            np.save(Path(tmp) / "y_train.npy", y_train)
            run["data/train"].track_files(tmp, wait=True)
        for i in range(4):
            run["data/samples"].append(runstore.File.as_image(digits.images[i] / 16.0), step=i)
        step = 0
        for epoch in range(epochs):
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                h = np.maximum(0, xb @ w1 + b1)
                p = softmax(h @ w2 + b2)
                loss = -np.log(p[np.arange(len(yb)), yb] + 1e-12).mean()
                run["train/batch/loss"].append(loss, step=step)
                g = p
                g[np.arange(len(yb)), yb] -= 1
                g /= len(yb)
                gw2, gb2 = h.T @ g, g.sum(0)
                gh = g @ w2.T
                gh[h <= 0] = 0
                gw1, gb1 = xb.T @ gh, gh.sum(0)
                w1 -= lr * gw1
                b1 -= lr * gb1
                w2 -= lr * gw2
                b2 -= lr * gb2
                step += 1
            train_acc = (softmax(np.maximum(0, x_train @ w1 + b1) @ w2 + b2).argmax(1) == y_train).mean()
            test_acc = (softmax(np.maximum(0, x_test @ w1 + b1) @ w2 + b2).argmax(1) == y_test).mean()
            run["train/acc"].append(train_acc, step=epoch)
            run["eval/acc"].append(test_acc, step=epoch)
            run["logs/epochs"].append(f"epoch {epoch}: train {train_acc:.3f} test {test_acc:.3f}")
        run["eval/final_acc"] = float(test_acc)
        buffer = io.BytesIO()
        np.savez(buffer, w1=w1, b1=b1, w2=w2, b2=b2)
        run["model/weights"].upload(runstore.File(content=buffer.getvalue(), name="mlp.npz"))
        run.wait()
        return str(run["sys/id"].fetch())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    print(train(args.project, epochs=args.epochs))
