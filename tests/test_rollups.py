"""Roll-ups: every bucket read through them equals a brute-force computation over raw points."""

import bisect
import math
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import rollups
from runs import series as series_store
from runs.ingest import apply_batch
from runs.models import Attribute, RollupCursor, SeriesRollup

from .conftest import batch, run_url

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)
values_with_specials = st.one_of(finite, finite, finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf))


def brute_force(points, lo, hi, origin, width):
    groups = {}
    for step, value in points:
        if lo <= step <= hi:
            groups.setdefault((step - origin) // width, []).append((step, value))
    out = []
    for key in sorted(groups):
        rows = groups[key]
        comparable = [v for _, v in rows if not math.isnan(v)]
        finite_values = [v for _, v in rows if math.isfinite(v)]
        out.append(
            {
                "step": max(lo, origin + key * width),
                "min": min(comparable) if comparable else math.nan,
                "max": max(comparable) if comparable else math.nan,
                "avg": math.fsum(finite_values) / len(finite_values) if finite_values else math.nan,
                "last": rows[-1][1],
                "count": len(rows),
                "first_step": rows[0][0],
                "last_step": rows[-1][0],
            }
        )
    return out


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, float) and math.isfinite(a):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-3)
    return a == b


def append(run, path, steps, values, seq):
    apply_batch(
        run,
        stream=uuid.uuid4().hex,
        seq=seq,
        raw_ops=[{"op": "append", "path": path, "steps": steps, "values": values}],
    )


def check_read(attr, points, buckets, lo, hi):
    got = series_store.downsample(attr.pk, attr.first_step, attr.last_step, buckets, lo, hi, raw_read_points=0)
    plan = rollups.plan(max(lo, attr.first_step), min(hi, attr.last_step), buckets)
    assert plan is not None
    level, origin, width = plan
    assert got["bucket_width"] == width and len(got["steps"]) <= buckets
    expected = brute_force(points, max(lo, attr.first_step), min(hi, attr.last_step), origin, width)
    assert len(got["steps"]) == len(expected)
    for i, bucket in enumerate(expected):
        assert got["steps"][i] == bucket["step"]
        assert got["counts"][i] == bucket["count"]
        assert (got["first_steps"][i], got["last_steps"][i]) == (bucket["first_step"], bucket["last_step"])
        for key in ("min", "max", "avg", "last"):
            assert same(bucket[key], got[key][i]), (key, i, bucket[key], got[key][i])
    return got


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    values=st.lists(values_with_specials, min_size=100, max_size=800),
    max_gap=st.sampled_from([1, 3, 40, 300]),
    seed=st.integers(0, 2**32),
    rolled_fraction=st.floats(0, 1),
    buckets=st.integers(min_value=1, max_value=60),
    window=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_rolled_up_buckets_match_brute_force(run, values, max_gap, seed, rolled_fraction, buckets, window):
    Attribute.objects.filter(run=run, path="s").delete()
    rng = random.Random(seed)
    steps, step = [], rng.randrange(0, 5000)
    for _ in values:
        steps.append(step)
        step += rng.randint(1, max_gap)
    cut = max(1, int(len(values) * rolled_fraction))
    append(run, "s", steps[:cut], values[:cut], seq=seed)
    attr = Attribute.objects.get(run=run, path="s")
    rollups.roll_up(attr.pk)  # the first part is rolled up; the rest is the live tail
    if cut < len(values):
        append(run, "s", steps[cut:], values[cut:], seq=seed + 1)
    attr.refresh_from_db()
    points = list(zip(steps, values, strict=True))
    lo = steps[0] + int((steps[-1] - steps[0]) * min(window))
    hi = steps[0] + int((steps[-1] - steps[0]) * max(window))
    # At least two base buckets per requested bucket: the whole series is always read through the
    # roll-ups (check_read fails if plan() sends it raw). A window too narrow for any level is read
    # raw (tests/test_series.py checks those), so it is compared only when planned.
    buckets = max(1, min(buckets, (steps[-1] - steps[0] + 1) // (2 * rollups.BASE)))
    check_read(attr, points, buckets, steps[0], steps[-1])
    if rollups.plan(lo, hi, buckets) is not None:
        check_read(attr, points, buckets, lo, hi)
    series_store.delete_points([attr.pk])


def test_every_stored_bucket_matches_its_raw_points(run):
    rng = random.Random(7)
    steps = sorted(rng.sample(range(0, 300_000), 8_000))
    values = [
        rng.uniform(-1e6, 1e6) if rng.random() > 0.05 else rng.choice([math.nan, math.inf, -math.inf]) for _ in steps
    ]
    append(run, "loss", steps, values, seq=1)
    attr = Attribute.objects.get(run=run, path="loss")
    rolled = rollups.roll_up(attr.pk)
    assert rolled == (steps[-1] + 1) // rollups.BASE * rollups.BASE
    rows = list(SeriesRollup.objects.filter(series=attr).order_by("level", "bucket"))
    assert {r.level for r in rows} >= set(range(0, 8))
    for row in rows:
        w = rollups.width(row.level)
        assert (row.bucket + 1) * w <= rolled  # only final buckets are stored
        i, j = bisect.bisect_left(steps, row.bucket * w), bisect.bisect_left(steps, (row.bucket + 1) * w)
        inside = list(zip(steps[i:j], values[i:j], strict=True))
        comparable = [v for _, v in inside if not math.isnan(v)]
        finite_values = [v for _, v in inside if math.isfinite(v)]
        assert row.count == len(inside) and row.finite_count == len(finite_values)
        assert (row.first_step, row.last_step) == (inside[0][0], inside[-1][0])
        assert same(min(comparable) if comparable else math.nan, math.nan if row.min_value is None else row.min_value)
        assert same(max(comparable) if comparable else math.nan, math.nan if row.max_value is None else row.max_value)
        assert same(inside[-1][1], math.nan if row.last_value is None else row.last_value)
    per_level = {}
    for row in rows:
        per_level[row.level] = per_level.get(row.level, 0) + row.count
    closed = sum(1 for s in steps if s < rolled // rollups.width(0) * rollups.width(0))
    assert per_level[0] == closed


def test_rolling_up_twice_writes_nothing_twice(run):
    append(run, "loss", list(range(10_000)), [float(i) for i in range(10_000)], seq=1)
    attr = Attribute.objects.get(run=run, path="loss")
    first = rollups.roll_up(attr.pk)
    before = list(SeriesRollup.objects.filter(series=attr).order_by("level", "bucket").values_list())
    assert rollups.roll_up(attr.pk) == first == 10_000 // 16 * 16
    assert list(SeriesRollup.objects.filter(series=attr).order_by("level", "bucket").values_list()) == before
    assert sum(r.count for r in SeriesRollup.objects.filter(series=attr, level=0)) == first


def test_chunked_roll_up_equals_one_pass(run, settings):
    append(run, "a", list(range(5_000)), [math.sin(i) for i in range(5_000)], seq=1)
    append(run, "b", list(range(5_000)), [math.sin(i) for i in range(5_000)], seq=2)
    a, b = Attribute.objects.get(run=run, path="a"), Attribute.objects.get(run=run, path="b")
    rollups.roll_up(a.pk)
    settings.RUNSTORE_ROLLUP_CHUNK_POINTS = 77
    rollups.roll_up(b.pk)

    def rows(attr):
        columns = ("level", "bucket", "min_value", "max_value", "count", "first_step", "last_step", "last_value")
        return list(SeriesRollup.objects.filter(series=attr).order_by("level", "bucket").values_list(*columns))

    assert rows(a) == rows(b) and len(rows(a)) > 300


def test_live_chart_sees_points_not_rolled_up_yet(run):
    append(run, "loss", list(range(50_000)), [1.0] * 50_000, seq=1)
    attr = Attribute.objects.get(run=run, path="loss")
    rollups.roll_up(attr.pk)
    append(run, "loss", [50_000, 50_001, 50_002], [7.0, 8.0, -3.0], seq=2)  # no task has run for these
    attr.refresh_from_db()
    got = series_store.downsample(attr.pk, attr.first_step, attr.last_step, 100)
    assert got["last_steps"][-1] == 50_002 and got["last"][-1] == -3.0
    assert got["max"][-1] == 8.0 and got["min"][-1] == -3.0 and sum(got["counts"]) == 50_003
    assert RollupCursor.objects.get(series=attr).rolled_until == 50_000


def test_reads_touch_a_few_thousand_rows_at_most():
    rng = random.Random(3)
    for _ in range(2_000):
        last = rng.randrange(10_000, 10**12)
        lo, hi = sorted(rng.randrange(0, last) for _ in range(2))
        buckets = rng.choice([100, 500, 1000, 2000])
        plan = rollups.plan(lo, hi, buckets)
        if plan is None:
            assert (hi - lo + 1) / buckets < 2 * rollups.BASE  # only narrow ranges are read raw
            continue
        level, origin, width = plan
        assert -(-(hi + 1 - origin) // width) <= buckets
        assert width <= 1.5 * -(-(hi - lo + 1) // buckets)
        parts = []
        rollups._cover(lo, hi + 1, level, parts)
        rows = sum(p[3] - p[2] for p in parts if p[0] == "rollup")
        raw = sum(p[2] - p[1] for p in parts if p[0] == "raw")
        assert rows <= 5.4 * buckets + 6 * rollups.LEVELS and raw < 2 * rollups.BASE


def test_deleting_a_series_deletes_its_rollups(run):
    append(run, "loss", list(range(1_000)), [0.5] * 1_000, seq=1)
    attr = Attribute.objects.get(run=run, path="loss")
    rollups.roll_up(attr.pk)
    assert SeriesRollup.objects.filter(series_id=attr.pk).exists()
    apply_batch(run, stream="r", seq=2, raw_ops=[{"op": "delete", "path": "loss"}])
    assert not SeriesRollup.objects.filter(series_id=attr.pk).exists()
    assert not RollupCursor.objects.filter(series_id=attr.pk).exists()


def test_batches_that_close_a_bucket_schedule_a_roll_up(run, django_capture_on_commit_callbacks, monkeypatch, settings):
    sent = []
    from runs import tasks

    settings.RUNSTORE_ROLLUP_DELAY = 0
    monkeypatch.setattr(tasks.rollup_series, "delay", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=True):
        append(run, "loss", list(range(10)), [1.0] * 10, seq=1)  # bucket [0, 16) still open
    assert sent == []
    with django_capture_on_commit_callbacks(execute=True):
        append(run, "loss", [10, 11, 12, 13, 14, 15], [1.0] * 6, seq=2)  # step 15 closes it
    loss = Attribute.objects.get(run=run, path="loss").pk
    assert sent == [[loss]]
    with django_capture_on_commit_callbacks(execute=True):
        append(run, "loss", list(range(16, 40)), [1.0] * 24, seq=3)
    assert sent == [[loss]]  # one is queued already: batches meanwhile queue nothing more
    rollups.roll_up(loss)  # the task clears the mark first
    with django_capture_on_commit_callbacks(execute=True):
        append(run, "loss", list(range(40, 50)), [1.0] * 10, seq=4)
    assert sent == [[loss], [loss]] and RollupCursor.objects.get(series_id=loss).queued


def test_a_roll_up_task_waits_the_configured_delay_so_the_batches_meanwhile_share_it(
    run, django_capture_on_commit_callbacks, monkeypatch, settings
):
    sent = []
    from runs import tasks

    settings.RUNSTORE_ROLLUP_DELAY = 2.5
    monkeypatch.setattr(tasks.rollup_series, "apply_async", lambda args, countdown: sent.append((args, countdown)))
    for seq in range(1, 4):  # three batches, each closing buckets, before the task runs
        with django_capture_on_commit_callbacks(execute=True):
            append(run, "loss", list(range((seq - 1) * 100, seq * 100)), [1.0] * 100, seq=seq)
    loss = Attribute.objects.get(run=run, path="loss").pk
    assert sent == [(([loss],), 2.5)]


def test_big_series_endpoint_reads_rollups(owner_api, run):
    values = [float(i % 1000) for i in range(60_000)]
    assert batch(owner_api, run, [{"op": "append", "path": "loss", "values": values}]).status_code == 200
    attr = Attribute.objects.get(run=run, path="loss")
    rollups.roll_up(attr.pk)
    body = owner_api.get(run_url(run, "series"), {"path": "loss", "buckets": 100}).json()
    assert sum(body["counts"]) == 60_000 and len(body["steps"]) <= 100
    assert body["bucket_width"] % rollups.width(0) == 0
    assert min(body["min"]) == 0.0 and max(body["max"]) == 999.0 and body["last"][-1] == 999.0


def test_a_grid_that_coarser_blocks_tile_is_read_from_the_coarser_level():
    """100,000 steps at 419 buckets: buckets of 256 steps, read from the 256-step level (one row per
    bucket), not from four 64-step blocks each; a grid they do not tile keeps the finer level."""
    assert rollups.plan(0, 99_999, 419) == (2, 0, 256)
    assert rollups.plan(0, 9_999, 100) == (1, 0, 128)


def _task_statements(series_ids):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runs import tasks

    with CaptureQueriesContext(connection) as captured:
        tasks.rollup_series(series_ids)
    return len(captured.captured_queries)


def _rollup_rows(series_id):
    return list(
        SeriesRollup.objects.filter(series_id=series_id)
        .order_by("level", "bucket")
        .values_list("level", "bucket", "min_value", "max_value", "sum_value", "finite_count", "count", "last_value")
    )


def test_a_roll_up_task_over_twenty_series_runs_as_many_statements_as_over_one(owner_api, run):
    """A client's batch closes buckets in all its series at once; its roll-up task writes them with
    one statement per step for all of them (it took ~10 statements per series, the database's
    largest cost under a 13-client load), and each series gets the buckets it gets alone."""
    steps = list(range(0, 300))
    ops = [
        {"op": "append", "path": f"s{i}", "steps": steps, "values": [i + math.sin(s) for s in steps]} for i in range(20)
    ]
    ops.append({"op": "append", "path": "alone", "steps": steps, "values": [math.sin(s) for s in steps]})
    assert batch(owner_api, run, ops).status_code == 200
    ids = {a.path: a.pk for a in Attribute.objects.filter(run=run, type="float_series")}
    twenty = [ids[f"s{i}"] for i in range(20)]

    one = _task_statements([ids["alone"]])
    assert _task_statements(twenty) == one
    assert one <= 15
    expected = _rollup_rows(ids["alone"])
    assert len(expected) > 20 and sum(r[6] for r in expected if r[0] == 0) == 288
    for i, sid in enumerate(twenty):
        rows = _rollup_rows(sid)
        assert [r[:2] + r[5:7] for r in rows] == [r[:2] + r[5:7] for r in expected]
        assert all(same(a + i, b) for a, b in ((r[2], s[2]) for r, s in zip(expected, rows, strict=True)))
    assert {c.series_id: c.rolled_until for c in RollupCursor.objects.filter(series_id__in=twenty)} == dict.fromkeys(
        twenty, 288
    )


def test_a_roll_up_task_finishes_series_of_different_ranges_and_backlogs_together(run, settings):
    """Series at different steps go in groups of the same range; a backlog above
    RUNSTORE_ROLLUP_CHUNK_POINTS steps is rolled up chunk by chunk beside them; a rerun writes nothing."""
    from runs import tasks

    append(run, "short", list(range(40)), [float(i) for i in range(40)], seq=1)
    append(run, "later", list(range(1000, 1100)), [float(i) for i in range(100)], seq=2)
    append(run, "long", list(range(5_000)), [math.cos(i) for i in range(5_000)], seq=3)
    append(run, "reference", list(range(5_000)), [math.cos(i) for i in range(5_000)], seq=4)
    ids = {a.path: a.pk for a in Attribute.objects.filter(run=run)}
    rollups.roll_up(ids["reference"])
    settings.RUNSTORE_ROLLUP_CHUNK_POINTS = 2_000

    done = tasks.rollup_series([ids["later"], ids["long"], ids["short"]])

    assert done == {str(ids["later"]): 1088, str(ids["long"]): 4992, str(ids["short"]): 32}
    assert _rollup_rows(ids["long"]) == _rollup_rows(ids["reference"])
    assert sum(r[6] for r in _rollup_rows(ids["later"]) if r[0] == 0) == 88
    before = {sid: _rollup_rows(sid) for sid in ids.values()}
    assert tasks.rollup_series(list(ids.values()))[str(ids["short"])] == 32
    assert {sid: _rollup_rows(sid) for sid in ids.values()} == before
