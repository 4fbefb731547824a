import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import series as series_store
from runs.models import Attribute

from .conftest import batch, run_url

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
values_with_specials = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf))


def brute_force(points, lo, hi, buckets):
    width = max(1, -(-(hi - lo + 1) // buckets))
    groups = {}
    for step, value in points:
        if lo <= step <= hi:
            groups.setdefault((step - lo) // width, []).append((step, value))
    result = []
    for bucket in sorted(groups):
        rows = groups[bucket]
        comparable = [v for _, v in rows if not math.isnan(v)]
        finite_values = [v for _, v in rows if math.isfinite(v)]
        result.append(
            {
                "step": lo + bucket * width,
                "min": min(comparable) if comparable else math.nan,
                "max": max(comparable) if comparable else math.nan,
                "avg": sum(finite_values) / len(finite_values) if finite_values else math.nan,
                "last": rows[-1][1],
                "count": len(rows),
                "first_step": rows[0][0],
                "last_step": rows[-1][0],
            }
        )
    return result


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, float) and math.isfinite(a):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(values_with_specials, min_size=1, max_size=300),
    gaps=st.lists(st.integers(min_value=1, max_value=50), min_size=300, max_size=300),
    buckets=st.integers(min_value=1, max_value=40),
    window=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_buckets_match_a_brute_force_computation(run, data, gaps, buckets, window):
    Attribute.objects.filter(run=run, path="s").delete()
    steps, step = [], 0
    for gap in gaps[: len(data)]:
        step += gap
        steps.append(step)
    points = list(zip(steps, data, strict=True))
    attr = Attribute.objects.create(
        run=run,
        project=run.project,
        path="s",
        type="float_series",
        first_step=steps[0],
        last_step=steps[-1],
        count=len(data),
    )
    series_store.delete_points([attr.pk])
    series_store.insert_float_points([(attr.pk, steps, [0.0] * len(steps), data)])
    lo = steps[0] + int((steps[-1] - steps[0]) * min(window))
    hi = steps[0] + int((steps[-1] - steps[0]) * max(window))
    got = series_store.downsample(attr.pk, steps[0], steps[-1], buckets, lo, hi)
    expected = brute_force(points, lo, hi, buckets)
    assert len(got["steps"]) == len(expected) <= buckets
    for i, bucket in enumerate(expected):
        assert got["steps"][i] == bucket["step"]
        assert got["counts"][i] == bucket["count"]
        assert got["first_steps"][i] == bucket["first_step"] and got["last_steps"][i] == bucket["last_step"]
        for key in ("min", "max", "avg", "last"):
            assert same(bucket[key], got[key][i]), (key, i, bucket[key], got[key][i])
    series_store.delete_points([attr.pk])


def test_downsample_endpoint_and_zoom(owner_api, run):
    values = [float(i % 100) for i in range(10_000)]
    batch(owner_api, run, [{"op": "append", "path": "loss", "values": values}])
    whole = owner_api.get(run_url(run, "series"), {"path": "loss", "buckets": 100}).json()
    assert len(whole["steps"]) == 100 and whole["bucket_width"] == 100 and whole["count"] == 10_000
    assert whole["min"][0] == 0.0 and whole["max"][0] == 99.0 and whole["last"][0] == 99.0
    zoom = owner_api.get(
        run_url(run, "series"), {"path": "loss", "buckets": 10, "from_step": 5000, "to_step": 5099}
    ).json()
    assert zoom["steps"][0] == 5000 and zoom["bucket_width"] == 10 and sum(zoom["counts"]) == 100
    bad = owner_api.get(run_url(run, "series"), {"path": "loss", "buckets": 0})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "buckets"
    missing = owner_api.get(run_url(run, "series"), {"path": "nope"})
    assert missing.status_code == 404
    bad_path = owner_api.get(run_url(run, "series"), {"path": "a//b"})
    assert bad_path.status_code == 400 and bad_path.json()["error"]["field"] == "path"


def test_raw_points_page_by_step(owner_api, run):
    batch(owner_api, run, [{"op": "append", "path": "loss", "values": [float(i) for i in range(25)]}])
    seen, after = [], None
    while True:
        params = {"path": "loss", "limit": 10}
        if after is not None:
            params["after_step"] = after
        page = owner_api.get(run_url(run, "series/points"), params).json()
        seen += page["steps"]
        after = page["next_after_step"]
        if after is None:
            break
    assert seen == list(range(25))
