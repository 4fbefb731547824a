"""Plain PyTorch: the model summary, and gradient/weight norms at the chosen frequency; read back from the server."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import runstore  # noqa: E402
from runstore.integrations.torch import ModelWatcher, log_model_summary  # noqa: E402


def test_model_watcher_logs_norms_every_n_steps_and_the_summary(init_kwargs, read_run):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model[2].bias.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    expected_grad_norms = {}
    with runstore.init_run(**init_kwargs) as run:
        log_model_summary(run, model)
        watcher = ModelWatcher(run, model, every_n_steps=3, per_parameter=True)
        for step in range(10):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            if watcher.step(step):
                grads = [p.grad.norm() ** 2 for p in model.parameters() if p.grad is not None]
                expected_grad_norms[step] = float(torch.stack(grads).sum().sqrt())
            optimizer.step()
            optimizer.zero_grad()
        run_id = run["sys/id"].fetch()

    read = read_run(run_id)
    assert "Linear(in_features=3, out_features=4" in read["model/summary"].fetch()
    assert read["model/total_parameters"].fetch() == 3 * 4 + 4 + 4 + 1
    assert read["model/trainable_parameters"].fetch() == 3 * 4 + 4 + 4
    grad = read["model/grad_norm/total"].fetch_values()
    assert list(grad["step"]) == [0, 3, 6, 9]
    assert list(grad["value"]) == pytest.approx([expected_grad_norms[s] for s in (0, 3, 6, 9)], rel=1e-5)
    assert list(read["model/weight_norm/total"].fetch_values()["step"]) == [0, 3, 6, 9]
    assert list(read["model/grad_norm/0.weight"].fetch_values()["step"]) == [0, 3, 6, 9]
    assert not read.exists("model/grad_norm/2.bias")  # frozen: no gradient
    assert read.exists("model/weight_norm/2.bias")


def test_model_watcher_refuses_a_frequency_below_one(init_kwargs):
    with runstore.init_run(**init_kwargs) as run, pytest.raises(ValueError, match="every_n_steps"):
        ModelWatcher(run, torch.nn.Linear(1, 1), every_n_steps=0)
