"""End to end: train a real small model on CPU (scikit-learn digits, numpy MLP) and log it through the client."""

import importlib.util
from pathlib import Path

import runstore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def test_training_a_digits_mlp_logs_everything(server, project, tmp_path):
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_id = module.train(
        project,
        epochs=8,
        api_token=server.token,
        url=server.url,
        flush_period=0.2,
        capture_hardware_metrics=False,
        capture_stdout=False,
        capture_stderr=False,
    )
    run = runstore.init_run(project=project, with_id=run_id, mode="read-only", api_token=server.token, url=server.url)
    assert run["eval/final_acc"].fetch() > 0.9
    acc = run["eval/acc"].fetch_values()
    assert list(acc["step"]) == list(range(8))
    batches = run["train/batch/loss"].fetch_values()
    assert len(batches) == 8 * 22 and batches["value"].iloc[-1] < batches["value"].iloc[0]
    assert run["parameters/optimizer/name"].fetch() == "sgd"
    assert run["data/train/file_count"].fetch() == 2
    assert run["sys/state"].fetch() == "finished"
    assert run["sys/tags"].fetch() == {"example", "numpy"}
    weights = run["model/weights"].download(str(tmp_path / "mlp.npz"))
    import numpy as np

    assert np.load(weights)["w1"].shape == (64, 64)
    assert len(run["data/samples"].fetch_files_list()) == 4
