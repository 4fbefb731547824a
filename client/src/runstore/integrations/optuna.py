"""Optuna: ``RunstoreCallback``, a study callback (``pip install 'runstore[optuna]'``).

    import optuna
    from runstore.integrations.optuna import RunstoreCallback

    study = optuna.create_study(study_name="lr-search", direction="minimize")
    study.optimize(objective, n_trials=50, callbacks=[RunstoreCallback(project="acme/tabular")])

Each finished trial becomes one run, in the group named after the study (``sys/group_tags`` holds the
study name; the run table groups by it, and ``sys/group_tags contains "lr-search"`` finds the study's
runs). A run holds ``parameters/…`` (the trial's parameters), ``optuna/value`` (``optuna/values/<i>``
for a multi-objective study), ``optuna/intermediate_values`` (the reported values, stepped by their
step), ``optuna/trial/{number,state,duration_seconds,user_attrs/…}``, ``optuna/study_name`` and the
study's best so far: ``optuna/best/{value,trial_number,params/…}`` (single objective). So the latest
trial's run answers "what is the best so far", and sorting the group by ``optuna/value`` ranks the trials.
A failed trial's run is failed; a pruned one is tagged ``pruned``. ``init_kwargs`` go to
``runstore.init_run`` for every trial's run (``project``, ``tags``, ...). Each trial's run is stopped
when the trial ends, waiting for the server as ``run.stop()`` does (at most ``stop_timeout`` seconds;
what is not delivered stays on disk for ``runstore sync``); ``run_ids`` maps trial numbers to run ids.
"""

from __future__ import annotations

from typing import Any

import optuna

import runstore

from ._common import RunHolder, log_params

__all__ = ["RunstoreCallback"]


class RunstoreCallback:
    """One Runstore run per finished trial, grouped by the study's name."""

    def __init__(self, *, tags: list[str] | None = None, stop_timeout: float | None = None, **init_kwargs: Any) -> None:
        self._tags = ["optuna", *(tags or [])]
        self._stop_timeout = stop_timeout
        self._init_kwargs = init_kwargs
        self.run_ids: dict[int, str] = {}

    def __call__(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name
        tags = self._tags + (["pruned"] if state == "PRUNED" else [])
        options = {"name": f"{study.study_name} #{trial.number}", **self._init_kwargs, "tags": tags}
        run = runstore.init_run(**options)
        try:
            self._log_trial(run, study, trial, state)
            try:
                self.run_ids[trial.number] = str(run["sys/id"].fetch())
            except runstore.RunstoreError:  # the server has not answered yet: the run is created later
                pass
        finally:
            run.stop(timeout=self._stop_timeout)

    def _log_trial(self, run: runstore.Run, study: Any, trial: Any, state: str) -> None:
        holder = RunHolder(run, "optuna", {})
        run["sys/group_tags"].add(study.study_name)
        holder.handler("study_name").assign(study.study_name)
        log_params(RunHolder(run, "", {}), "parameters", trial.params)
        holder.handler("trial/number").assign(trial.number)
        holder.handler("trial/state").assign(state)
        if trial.duration is not None:
            holder.handler("trial/duration_seconds").assign(trial.duration.total_seconds())
        log_params(holder, "trial/user_attrs", trial.user_attrs)
        log_params(holder, "trial/distributions", {k: str(v) for k, v in trial.distributions.items()})
        values = trial.values or []
        if len(values) == 1:
            holder.handler("value").assign(float(values[0]))
        else:
            for i, value in enumerate(values):
                holder.handler(f"values/{i}").assign(float(value))
        for step in sorted(trial.intermediate_values):
            holder.append("intermediate_values", trial.intermediate_values[step], step)
        if len(study.directions) == 1:
            try:
                best = study.best_trial
            except ValueError:  # no trial completed yet
                best = None
            if best is not None:
                holder.handler("best/value").assign(float(best.value))
                holder.handler("best/trial_number").assign(best.number)
                log_params(holder, "best/params", best.params)
        if state == "FAIL":
            run.fail(f"trial {trial.number} of study {study.study_name!r} failed")
