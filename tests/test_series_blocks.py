"""Packed point blocks (runs.blocks): exact round trips, reads across blocks and the open tail,
the conversion of the row layout, deletion, and what a point costs on disk."""

import io
import math
import random
import struct

import msgpack
import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from runs import rollups
from runs import series as series_store
from runs.ingest import apply_batch
from runs.models import Attribute, FloatBlock, StringBlock

from .conftest import batch, run_url
from .test_rollups import brute_force, same

SPECIALS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    5e-324,  # the smallest subnormal
    -2.5e-310,  # a subnormal
    2.2250738585072014e-308,  # the smallest normal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1 / 3,
]


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def exact(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)


def kept(a: float, b: float) -> bool:
    """Exact, except that SQLite writes a REAL without a fraction as an integer: -0.0 that waited in
    a tail row (as every point did in the row layout) reads 0.0. A block keeps it (see below)."""
    return exact(a, b) or (connection.vendor == "sqlite" and a == b == 0.0)


def random_floats(rng: random.Random, n: int) -> list[float]:
    """Any finite float64 bit pattern, with the specials sprinkled in."""
    out = []
    while len(out) < n:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            out.append(rng.choice(SPECIALS) if rng.random() < 0.1 else value)
    return out


def all_points(client, run, path, limit=37):
    """Every point through the paged points endpoint (msgpack: floats travel as float64)."""
    steps, timestamps, values, after = [], [], [], None
    while True:
        query = {"path": path, "limit": limit, **({"after_step": after} if after is not None else {})}
        response = client.get(run_url(run, "series/points"), query, HTTP_ACCEPT="application/msgpack")
        assert response.status_code == 200
        page = msgpack.unpackb(response.content)
        steps += page["steps"]
        timestamps += page["timestamps"]
        values += page["values"]
        after = page["next_after_step"]
        if after is None:
            return steps, timestamps, values


def append_batches(client, run, path, steps, timestamps, values, sizes):
    """Append the points in batches of the given sizes (the last one takes the rest)."""
    at, seq = 0, 1
    for size in [*sizes, len(values)]:
        if at >= len(values):
            break
        part = slice(at, at + size)
        op = {
            "op": "append",
            "path": path,
            "steps": steps[part],
            "timestamps": timestamps[part],
            "values": values[part],
        }
        response = batch(client, run, [op], seq=seq, fmt="msgpack")
        assert response.status_code == 200, response.content
        at, seq = at + size, seq + 1


def test_float_points_round_trip_bit_for_bit_across_blocks_and_the_tail(owner_api, run, settings):
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 64
    rng = random.Random(18)
    n = 64 * 5 + 23
    values = SPECIALS + random_floats(rng, n - 2 * len(SPECIALS)) + SPECIALS  # the specials packed and in the tail
    steps, step = [], 0
    for _ in range(n):
        step += rng.choice([1, 1, 1, 2, 7, 1000, 2**40])
        steps.append(step)
    timestamps = [rng.uniform(0, 4e9) for _ in range(n)]
    timestamps.sort()
    append_batches(owner_api, run, "loss", steps, timestamps, values, [10, 50, 1, 3, 200, 64])
    series = Attribute.objects.get(run=run, path="loss")
    assert FloatBlock.objects.filter(series_id=series.pk).count() == n // 64  # packed as they filled

    got_steps, got_times, got_values = all_points(owner_api, run, "loss")
    assert got_steps == steps
    assert all(exact(a, b) for a, b in zip(got_times, timestamps, strict=True))
    wrong = [(i, a, b) for i, (a, b) in enumerate(zip(got_values, values, strict=True)) if not kept(a, b)]
    assert not wrong, wrong[:5]

    # a window that starts inside one block and ends in the tail
    lo, hi = steps[100], steps[-5]
    window = owner_api.get(
        run_url(run, "series/points"),
        {"path": "loss", "from_step": lo, "to_step": hi},
        HTTP_ACCEPT="application/msgpack",
    )
    page = msgpack.unpackb(window.content)
    assert page["steps"] == steps[100:-4]
    assert all(kept(a, b) for a, b in zip(page["values"], values[100:-4], strict=True))


def test_a_big_append_is_stored_as_full_blocks_and_reads_back_at_the_default_size(owner_api, run):
    size = series_store.blocks.block_points()
    n = 2 * size + 100
    values = [float(np.float32(1.0 / (1 + i) + 0.01 * math.sin(i))) for i in range(n)]
    values[5 : 5 + len(SPECIALS)] = SPECIALS
    append_batches(owner_api, run, "loss", list(range(n)), [1.7e9 + i * 0.01 for i in range(n)], values, [n])
    series = Attribute.objects.get(run=run, path="loss")
    assert FloatBlock.objects.filter(series_id=series.pk).count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs_floatpoint WHERE series_id = %s", [series.pk])
        assert cursor.fetchone()[0] == 100
    middle = owner_api.get(
        run_url(run, "series/points"), {"path": "loss", "from_step": size - 3, "to_step": size + 2}
    ).json()
    assert middle["steps"] == list(range(size - 3, size + 3)) and middle["values"] == values[size - 3 : size + 3]
    packed = msgpack.unpackb(
        owner_api.get(
            run_url(run, "series/points"), {"path": "loss", "limit": 20}, HTTP_ACCEPT="application/msgpack"
        ).content
    )["values"]
    assert all(exact(a, b) for a, b in zip(packed, values[:20], strict=True))  # -0.0 too, on both databases
    edge = owner_api.get(run_url(run, "series/points"), {"path": "loss", "from_step": 2 * size - 1, "limit": 3}).json()
    assert edge["steps"] == [2 * size - 1, 2 * size, 2 * size + 1] and edge["next_after_step"] == 2 * size + 1
    buckets = msgpack.unpackb(
        owner_api.get(run_url(run, "series"), {"path": "loss", "buckets": 7}, HTTP_ACCEPT="application/msgpack").content
    )
    expected = brute_force(list(enumerate(values)), 0, n - 1, 0, -(-n // 7))
    assert buckets["counts"] == [b["count"] for b in expected]
    for key in ("min", "max", "avg", "last"):
        assert all(same(b[key], got) for b, got in zip(expected, buckets[key], strict=True)), key


@pytest.mark.parametrize("rolled", [False, True])
def test_buckets_and_roll_ups_over_blocks_and_tail_match_brute_force(run, settings, rolled):
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 32
    rng = random.Random(7)
    steps, values, step = [], [], 0
    for _ in range(1500):
        step += rng.choice([1, 1, 2, 5, 17])
        steps.append(step)
        values.append(rng.choice([*SPECIALS[:4], rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1e6, 1e6)]))
    at, seq = 0, 1
    for size in (1, 40, 3, 500, 31, 32, 900):
        apply_batch(
            run,
            stream="s",
            seq=seq,
            raw_ops=[
                {
                    "op": "append",
                    "path": "x",
                    "steps": steps[at : at + size],
                    "timestamps": [float(s) for s in steps[at : at + size]],
                    "values": values[at : at + size],
                }
            ],
        )
        at, seq = at + size, seq + 1
    series = Attribute.objects.get(run=run, path="x")
    assert series.count == 1500 and FloatBlock.objects.filter(series_id=series.pk).count() == 1500 // 32
    if rolled:
        rollups.roll_up(series.pk)
    points = list(zip(steps, values, strict=True))
    for lo, hi, buckets in ((steps[0], steps[-1], 13), (steps[10], steps[1400], 50), (steps[-20], steps[-1], 4)):
        raw_limit = 0 if rolled else 10**9
        got = series_store.downsample(series.pk, steps[0], steps[-1], buckets, lo, hi, raw_read_points=raw_limit)
        chosen = rollups.plan(lo, hi, buckets) if rolled else None
        origin = chosen[1] if chosen else lo
        expected = brute_force(points, lo, hi, origin, got["bucket_width"])
        assert got["steps"] == [b["step"] for b in expected]
        assert got["counts"] == [b["count"] for b in expected]
        assert got["first_steps"] == [b["first_step"] for b in expected]
        for key in ("min", "max", "avg", "last"):
            assert all(same(b[key], v) for b, v in zip(expected, got[key], strict=True)), key
    wanted = [steps[0], steps[31], steps[32], steps[777], steps[-1], steps[-1] + 1]
    times = series_store.step_times(series.pk, wanted)
    assert times == [float(s) for s in wanted[:5]] + [None]


def test_string_series_round_trip_and_log_reads_span_blocks(owner_api, run, client, owner, settings):
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 16
    lines = [f"line {i} {'é' * (i % 3)}{'✓' if i % 5 == 0 else ''}" for i in range(70)]
    lines[3], lines[20] = "", "needle in a block"
    lines[68] = "NEEDLE in the tail"
    for seq, part in enumerate((lines[:5], lines[5:40], lines[40:41], lines[41:]), 1):
        response = batch(
            owner_api, run, [{"op": "append", "path": "monitoring/stdout", "kind": "string", "values": part}], seq=seq
        )
        assert response.status_code == 200, response.content
    series = Attribute.objects.get(run=run, path="monitoring/stdout")
    assert StringBlock.objects.filter(series_id=series.pk).count() == 70 // 16
    steps, _times, values = all_points(owner_api, run, "monitoring/stdout", limit=9)
    assert steps == list(range(70)) and values == lines
    assert series_store.read_last_points(series.pk, series_store.STRING_TABLE, 20) == list(
        zip(range(50, 70), lines[50:], strict=True)
    )
    client.force_login(owner)
    found = client.get(f"/w/acme/vision/runs/{run.human_id}/log", {"path": "monitoring/stdout", "q": "needle"})
    assert found.status_code == 200
    body = found.content.decode()
    assert "needle in a block" in body and "NEEDLE in the tail" in body and "line 21" not in body
    usage = series_store.string_bytes("%s", [series.pk])
    assert usage == sum(len(line.encode()) for line in lines)


def _insert_rows(table, series_id, steps, values):
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (series_id, step, timestamp, value) VALUES (%s, %s, %s, %s)",
            [(series_id, s, 1000.0 + s, v) for s, v in zip(steps, values, strict=True)],
        )


def test_pack_series_converts_points_stored_as_rows_and_a_rerun_changes_nothing(run, settings):
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 16
    apply_batch(run, stream="s", seq=1, raw_ops=[{"op": "append", "path": "f", "values": [0.0]}])
    apply_batch(run, stream="s", seq=2, raw_ops=[{"op": "append", "path": "t", "kind": "string", "values": ["a"]}])
    floats, strings = Attribute.objects.get(run=run, path="f"), Attribute.objects.get(run=run, path="t")
    # the row layout as the previous version stored it: every point a row
    values = [math.nan if i % 9 == 0 else i / 7 for i in range(1, 300)]
    _insert_rows("runs_floatpoint", floats.pk, range(1, 300), values)
    _insert_rows("runs_stringpoint", strings.pk, range(1, 100), [f"s{i}" for i in range(1, 100)])
    Attribute.objects.filter(pk=floats.pk).update(count=300, last_step=299)
    Attribute.objects.filter(pk=strings.pk).update(count=100, last_step=99)
    before = series_store.read_points(floats.pk, series_store.FLOAT_TABLE, limit=10_000)
    strings_before = series_store.read_points(strings.pk, series_store.STRING_TABLE, limit=10_000)
    assert not FloatBlock.objects.exists()

    call_command("pack_series", stdout=io.StringIO())
    assert FloatBlock.objects.filter(series_id=floats.pk).count() == 300 // 16
    assert StringBlock.objects.filter(series_id=strings.pk).count() == 100 // 16
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs_floatpoint WHERE series_id = %s", [floats.pk])
        assert cursor.fetchone()[0] == 300 % 16
    after = series_store.read_points(floats.pk, series_store.FLOAT_TABLE, limit=10_000)
    assert after["steps"] == before["steps"] and after["timestamps"] == before["timestamps"]
    assert all(exact(a, b) for a, b in zip(after["values"], before["values"], strict=True))
    assert series_store.read_points(strings.pk, series_store.STRING_TABLE, limit=10_000) == strings_before

    assert series_store.pack_existing() == {"runs_floatpoint": 0, "runs_stringpoint": 0}  # resumed: nothing left
    assert FloatBlock.objects.filter(series_id=floats.pk).count() == 300 // 16
    # appends carry on after the packed blocks
    apply_batch(run, stream="s", seq=3, raw_ops=[{"op": "append", "path": "f", "values": [5.0] * 20}])
    assert series_store.read_points(floats.pk, series_store.FLOAT_TABLE, limit=10_000)["steps"] == list(range(320))


def test_deleting_a_run_removes_its_blocks(owner, owner_api, run, settings):
    from runs import cleanup
    from runs import services as run_services

    settings.RUNSTORE_SERIES_BLOCK_POINTS = 16
    ops = [
        {"op": "append", "path": "loss", "values": [1.0] * 100},
        {"op": "append", "path": "out", "kind": "string", "values": ["x"] * 40},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    ids = list(Attribute.objects.filter(run=run).values_list("pk", flat=True))
    assert FloatBlock.objects.filter(series_id__in=ids).exists()
    assert StringBlock.objects.filter(series_id__in=ids).exists()
    run_services.delete_run(owner, run)
    cleanup.purge_run(run.pk)
    assert not FloatBlock.objects.filter(series_id__in=ids).exists()
    assert not StringBlock.objects.filter(series_id__in=ids).exists()


def test_mlflow_later_value_at_the_last_step_updates_a_packed_point(owner_api, run, settings):
    settings.RUNSTORE_SERIES_BLOCK_POINTS = 4
    api = "/api/2.0/mlflow/"
    metrics = [{"key": "m", "value": float(i), "timestamp": 1000 + i, "step": i} for i in range(4)]
    body = {"run_id": run.uuid.hex, "metrics": metrics}
    assert owner_api.post(api + "runs/log-batch", body, format="json").status_code == 200
    series = Attribute.objects.get(run=run, path="metrics/m")
    assert FloatBlock.objects.filter(series_id=series.pk).count() == 1  # the last point is in a block
    later = {"run_id": run.uuid.hex, "metrics": [{"key": "m", "value": 9.5, "timestamp": 5000, "step": 3}]}
    assert owner_api.post(api + "runs/log-batch", later, format="json").status_code == 200
    points = owner_api.get(run_url(run, "series/points"), {"path": "metrics/m"}).json()
    assert points["values"] == [0.0, 1.0, 2.0, 9.5] and points["timestamps"][-1] == 5.0


def _table_bytes(table: str) -> int:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            hyper = cursor.fetchone() is not None
            if hyper:
                cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", [table])
                hyper = cursor.fetchone() is not None
            cursor.execute(f"SELECT {'hypertable_size' if hyper else 'pg_total_relation_size'}(%s::regclass)", [table])
            return cursor.fetchone()[0]
        cursor.execute("SELECT name FROM sqlite_master WHERE tbl_name = %s AND type IN ('table', 'index')", [table])
        names = [r[0] for r in cursor.fetchall()]
        marks = ", ".join(["%s"] * len(names))
        cursor.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", names)
        return cursor.fetchone()[0]


def test_a_training_curve_takes_a_fraction_of_the_bytes_of_the_row_layout(owner_api, run):
    size = series_store.blocks.block_points()
    n = 10 * size
    rng = np.random.default_rng(3)
    loss = (2.5 * np.exp(-np.arange(n) / 8000) + 0.05 * rng.standard_normal(n)).astype(np.float32).astype(float)
    times = [1.7e9 + i * 0.01 for i in range(n)]
    append_batches(owner_api, run, "train/loss", list(range(n)), times, loss.tolist(), [n])
    series = Attribute.objects.get(run=run, path="train/loss")
    assert FloatBlock.objects.filter(series_id=series.pk).count() == 10
    # the same points in a copy of the row table (the previous layout: one row per point)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE TABLE rows_copy (LIKE runs_floatpoint INCLUDING ALL)")
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_floatpoint'")
            cursor.execute(cursor.fetchone()[0].replace('"runs_floatpoint"', '"rows_copy"', 1))
        cursor.executemany(
            "INSERT INTO rows_copy (series_id, step, timestamp, value) VALUES (%s, %s, %s, %s)",
            [(series.pk, i, t, v) for i, (t, v) in enumerate(zip(times, loss.tolist(), strict=True))],
        )
    blocks_per_point = _table_bytes("runs_floatblock") / n
    rows_per_point = _table_bytes("rows_copy") / n
    assert blocks_per_point <= 8, blocks_per_point
    assert rows_per_point >= 4 * blocks_per_point, (rows_per_point, blocks_per_point)


def test_small_appends_leave_rows_that_the_roll_up_task_packs_without_changing_a_point(owner_api, run, settings):
    """A request never pays for packing blocks that its few points filled (that made every 41st batch of
    a 20-series client take seconds): the series' roll-up task packs them."""
    from runs import tasks

    settings.RUNSTORE_SERIES_BLOCK_POINTS = 16
    for seq in range(10):  # 50 points, 5 a batch: three blocks' worth
        values = [seq * 5.0 + i for i in range(5)]
        assert (
            batch(owner_api, run, [{"op": "append", "path": "loss", "values": values}], seq=seq + 1).status_code == 200
        )
    series = Attribute.objects.get(run=run, path="loss")
    before = owner_api.get(run_url(run, "series/points"), {"path": "loss"}).json()
    assert before["values"] == [float(i) for i in range(50)]
    assert not FloatBlock.objects.filter(series_id=series.pk).exists()  # still rows

    tasks.rollup_series([series.pk])

    assert FloatBlock.objects.filter(series_id=series.pk).count() == 3
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs_floatpoint WHERE series_id = %s", [series.pk])
        assert cursor.fetchone()[0] == 2
    assert owner_api.get(run_url(run, "series/points"), {"path": "loss"}).json() == before
    tasks.rollup_series([series.pk])  # nothing more to pack
    assert FloatBlock.objects.filter(series_id=series.pk).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_batch_appending_to_a_series_does_not_wait_for_its_roll_up_task_packing_the_tail(settings, monkeypatch):
    """The task packing a series' tail held the series' row locked until it committed, and every batch
    appending to that series (which updates the row) waited for the whole pack. PostgreSQL only:
    SQLite writes one transaction at a time."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    import threading

    from django.contrib.auth.models import User
    from django.db import DatabaseError

    from projects import services as project_services
    from runs import blocks, tasks
    from runs import services as run_services

    settings.RUNSTORE_SERIES_BLOCK_POINTS = 16
    owner = User.objects.create_user("packer")
    workspace = project_services.create_workspace(owner, "pack")
    project = project_services.create_project(owner, workspace, "p", key="PACK")
    run, _ = run_services.create_run(owner, project)

    def append(seq, start, n):
        steps = list(range(start, start + n))
        ops = [{"op": "append", "path": "loss", "values": [float(s) for s in steps], "steps": steps}]
        return apply_batch(run, stream="s", seq=seq, raw_ops=ops)

    for seq in range(10):  # 50 points in small appends: rows for the task to pack
        append(seq, seq * 5, 5)
    series = Attribute.objects.get(run=run, path="loss")
    inside, release, errors = threading.Event(), threading.Event(), []
    insert_blocks = blocks.insert_blocks

    def paused_insert(*args, **kwargs):
        inside.set()
        release.wait(10)
        return insert_blocks(*args, **kwargs)

    monkeypatch.setattr(blocks, "insert_blocks", paused_insert)

    def task():
        try:
            tasks.rollup_series([series.pk])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=task)
    worker.start()
    try:
        assert inside.wait(10), "the task never reached its pack"
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        try:
            result = append(10, 50, 5)  # the pack is mid-way, its transaction open
        except DatabaseError as exc:
            pytest.fail(f"the batch waited for the pack: {exc}")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        release.set()
        worker.join(30)
    assert errors == [] and result["applied"]
    loss = Attribute.objects.get(run=run, path="loss")
    assert (loss.count, loss.last_step) == (55, 54)
    assert FloatBlock.objects.filter(series_id=series.pk).count() == 3
    with connection.cursor() as cursor:
        points = blocks.load(cursor, "runs_floatpoint", [series.pk])[series.pk]
    assert points.steps.tolist() == list(range(55)) and points.values.tolist() == [float(s) for s in range(55)]
