"""Optuna: RunstoreCallback makes one run per trial, grouped by the study's name, with the trial's
parameters, value, intermediate values, state and the study's best so far; read back from the server."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from runstore.integrations.optuna import RunstoreCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def objective(trial):
    x = trial.suggest_float("x", -4.0, 4.0)
    kind = trial.suggest_categorical("kind", ["square", "abs"])
    depth = trial.suggest_int("depth", 1, 3)
    trial.set_user_attr("note", f"depth {depth}")
    if trial.number == 3:
        raise ValueError("a broken trial")
    for step in range(3):
        trial.report((x - 1) ** 2 + step, step)
    if trial.number == 4:
        raise optuna.TrialPruned()
    return (x - 1) ** 2 + depth if kind == "square" else abs(x - 1) + depth


def test_optuna_callback_makes_one_run_per_trial_in_a_group_named_after_the_study(init_kwargs, read_run, read_project):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="quad-search", direction="minimize", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    callback = RunstoreCallback(**init_kwargs)
    study.optimize(objective, n_trials=6, callbacks=[callback], catch=(ValueError,))

    assert sorted(callback.run_ids) == list(range(6))
    table = read_project.fetch_runs_table(query='sys/group_tags contains "quad-search"').to_rows()
    assert len(table) == 6

    best = study.best_trial
    for trial in study.trials:
        run = read_run(callback.run_ids[trial.number])
        assert run["sys/name"].fetch() == f"quad-search #{trial.number}"
        assert "quad-search" in run["sys/group_tags"].fetch()
        assert run["optuna/trial/number"].fetch() == trial.number
        assert run["optuna/trial/state"].fetch() == trial.state.name
        assert run["parameters/x"].fetch() == pytest.approx(trial.params["x"])
        assert run["parameters/kind"].fetch() == trial.params["kind"]
        assert run["parameters/depth"].fetch() == trial.params["depth"]
        assert run["optuna/trial/user_attrs/note"].fetch() == f"depth {trial.params['depth']}"
        if trial.state.name == "COMPLETE":
            assert run["optuna/value"].fetch() == pytest.approx(trial.value)
            assert run["sys/state"].fetch() == "finished"
        if trial.state.name == "FAIL":
            assert run["sys/failed"].fetch() is True
            assert not run.exists("optuna/value")
        if trial.state.name == "PRUNED":
            assert "pruned" in run["sys/tags"].fetch()
        if trial.intermediate_values:
            values = run["optuna/intermediate_values"].fetch_values()
            assert list(values["step"]) == [0, 1, 2]

    last = read_run(callback.run_ids[5])
    assert last["optuna/best/value"].fetch() == pytest.approx(best.value)
    assert last["optuna/best/trial_number"].fetch() == best.number
    assert last["optuna/best/params/x"].fetch() == pytest.approx(best.params["x"])
    ranked = read_project.fetch_runs_table(
        query='sys/group_tags contains "quad-search" and exists optuna/value', sort_by="optuna/value", ascending=True
    ).to_rows()
    assert ranked[0]["sys/id"] == callback.run_ids[best.number]


def test_optuna_multi_objective_trials_log_each_value(init_kwargs, read_run):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="pareto", directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=2)
    )
    callback = RunstoreCallback(**init_kwargs, tags=["moo"])

    def two(trial):
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x * x

    study.optimize(two, n_trials=2, callbacks=[callback])
    run = read_run(callback.run_ids[1])
    assert run["optuna/values/0"].fetch() == pytest.approx(study.trials[1].values[0])
    assert run["optuna/values/1"].fetch() == pytest.approx(study.trials[1].values[1])
    assert run["sys/tags"].fetch() == {"optuna", "moo"}
    assert not run.exists("optuna/best/value")
