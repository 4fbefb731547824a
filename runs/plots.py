"""Compare's parameter plots: which fields to offer, which to draw first, and their values per run.

The parallel-coordinates plot opens on the parameters that vary most with the chosen metric:
numeric ones ranked by the absolute Spearman rank correlation with the metric, categorical ones
(strings, booleans) by the correlation ratio η (the square root of the share of the metric's
variance the categories explain), both in [0, 1]. A parameter with one value across the runs is
constant and never a default.
"""

import math
from typing import Any

from .models import Attribute, AttributeType

PARAM_PREFIXES = ("parameters/", "params/", "config/", "hparams/", "hyperparameters/")
METRIC_PREFIXES = ("eval/", "metrics/", "val/", "valid/", "validation/", "test/")
SCALAR_TYPES = (AttributeType.INT, AttributeType.FLOAT, AttributeType.BOOL, AttributeType.STRING)
PLOT_TYPES = (*SCALAR_TYPES, AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES)
DEFAULT_AXES = 6
MAX_CHOICES = 300
MAX_PATHS = 2000


def plot_value(type_, int_value, float_value, bool_value, string_value):
    """A field's value on a plot axis: a finite number, a category (string), or None."""
    if type_ == AttributeType.INT:
        return int_value
    if type_ in (AttributeType.FLOAT, AttributeType.FLOAT_SERIES):
        if float_value is None or math.isnan(float_value) or math.isinf(float_value):
            return None
        return float_value
    if type_ == AttributeType.BOOL:
        return None if bool_value is None else ("true" if bool_value else "false")
    if type_ in (AttributeType.STRING, AttributeType.STRING_SERIES):
        return string_value
    return None


def read_values(runs, paths=None) -> tuple[dict[str, dict[int, object]], dict[str, set[str]]]:
    """({path: {run id: value}}, {path: types}) of the runs' plottable fields (``paths`` only, when given)."""
    attrs = Attribute.objects.filter(run__in=runs, type__in=PLOT_TYPES)
    if paths is not None:
        attrs = attrs.filter(path__in=paths)
    out: dict[str, dict[int, object]] = {}
    types: dict[str, set[str]] = {}
    rows = attrs.values_list("run_id", "path", "type", "int_value", "float_value", "bool_value", "string_value")
    for run_id, path, type_, *raw in rows.iterator(chunk_size=5000):
        types.setdefault(path, set()).add(type_)
        value = plot_value(type_, *raw)
        if value is not None:
            out.setdefault(path, {})[run_id] = value
    return out, types


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def association(param: dict[int, object], metric: dict[int, object]) -> tuple[float | None, str]:
    """How much ``metric`` varies with ``param`` over the runs having both: (score in [0, 1] or None, kind)."""
    pairs: list[tuple[Any, float]] = [
        (param[r], float(y)) for r in param if r in metric and isinstance(y := metric[r], (int, float))
    ]
    categorical = any(isinstance(v, str) for v in param.values())
    if len(pairs) < 2:
        return None, "η" if categorical else "|ρ|"
    ys = [y for _, y in pairs]
    if categorical:
        groups: dict[str, list[float]] = {}
        for x, y in pairs:
            groups.setdefault(str(x), []).append(y)
        mean = sum(ys) / len(ys)
        total = sum((y - mean) ** 2 for y in ys)
        if total == 0 or len(groups) < 2:
            return None, "η"
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        return math.sqrt(between / total), "η"
    rho = _pearson(_ranks([float(x) for x, _ in pairs]), _ranks(ys))
    return (None if rho is None else abs(rho)), "|ρ|"


def choose(runs, metric: str = "") -> dict:
    """The plots' choices for these runs: the paths to offer, the metric, and the parameters ranked
    (``param_choices``: path, score, note, constant, default) with the defaults checked."""
    values, types = read_values(runs)
    paths = sorted(values)[:MAX_PATHS]
    numeric = [p for p in paths if all(isinstance(v, (int, float)) for v in values[p].values())]
    scalar_paths = {p for p in paths if types[p] <= set(SCALAR_TYPES)}
    params = [p for p in paths if p in scalar_paths and p.startswith(PARAM_PREFIXES)]
    if not metric or metric not in values:
        metrics = [p for p in numeric if p.startswith(METRIC_PREFIXES)] or [
            p for p in numeric if p not in params and not p.startswith("sys/")
        ]
        metric = metrics[0] if metrics else ""
    if not params:
        params = [p for p in paths if p in scalar_paths and not p.startswith("sys/") and p != metric]
    metric_values = values.get(metric, {})
    choices = []
    for path in params:
        if path == metric:
            continue
        distinct = len({str(v) for v in values[path].values()})
        score, kind = association(values[path], metric_values)
        if distinct <= 1:
            note = "constant"
        elif score is None:
            note = f"{distinct} values"
        else:
            note = f"{kind} {score:.2f}"
        choices.append(
            {
                "path": path,
                "score": score,
                "note": note,
                "constant": distinct <= 1,
                "distinct": distinct,
                "default": False,
            }
        )

    # the parameters most associated with the metric first; without a metric, those with most values
    def rank(c: dict[str, Any]) -> tuple[bool, float, int, str]:
        return (c["constant"], -(c["score"] if c["score"] is not None else -1.0), -c["distinct"], c["path"])

    choices.sort(key=rank)
    for choice in choices[:DEFAULT_AXES]:
        choice["default"] = not choice["constant"]
    defaults = [c["path"] for c in choices if c["default"]]
    return {
        "plot_paths": paths,
        "numeric_paths": numeric,
        "param_choices": choices[:MAX_CHOICES],
        "default_params": defaults,
        "default_metric": metric,
        "default_x": defaults[0] if defaults else "",
        "default_y": metric,
    }
