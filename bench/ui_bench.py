"""UI benchmark: the three main pages at scale, measured in headless Chromium (Debian's, via Playwright).

    .venv/bin/python bench/ui_bench.py [--db sqlite|postgres] [--runs 100000] [--points 100000]

Builds a throw-away database (SQLite file in a temp dir, or PostgreSQL
``runstore_bench_ui``, dropped and created) with

* ``lab/big``: ``--runs`` runs with 13 logged fields each (20 table columns with the sys ones);
* ``lab/cmp``: 10 runs with 2,000 fields and 50 float series of ``--points`` points each;
* ``lab/one``: one run with a 1,000,000-point float series;
* ``lab/dash``: ``--dash-runs`` runs (100) with 20 float series of ``--dash-points`` points (10,000) each,

rolls the series up (what the Celery task does after ingest), serves it with
gunicorn and measures:

* run table, 20 columns, first page: server response (median of 7 GETs) and first contentful paint;
* compare view of the 10 runs: usable (first chart drawn), longest long task while scrolling
  through all 50 charts, JS heap after all are drawn;
* run page of the 1M-point series: time until its chart is drawn;
* project dashboard of ``lab/dash`` with its 20 charts over all its runs: time until every chart is
  drawn, in a window tall enough to show them all (so none waits for a scroll), and its requests.

``--quick`` shrinks everything (10,000 table runs, 10,000-point compare series, 1,000-point dashboard
series) for a smoke test in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from bench.common import PYTHON, free_port, log, median  # noqa: E402

CHROMIUM = os.environ.get("RUNSTORE_TEST_CHROMIUM") or "/usr/bin/chromium"
PASSWORD = "bench-password"
PG_UI_DB = "runstore_bench_ui"  # its own scratch database: other benchmarks recreate runstore_bench
# A new tab of Debian's Chromium (headless, one window per tab) builds its own omnibox popup, a
# WebUI renderer: ~1.2 s of CPU in its first second or two, measured on this 2-core machine with
# Chromium's trace. A page timed from the tab's creation shared the cores with it (the dashboard's
# 20 charts: Chromium used 2.2-2.4 s of CPU per load, 1.0-1.2 s once the tab had settled), so every
# timed page load starts in a tab opened this long before, as a click in an open tab would.
TAB_SETTLE_S = 2.0
TABLE_COLUMNS = [
    "sys/id",
    "sys/name",
    "sys/owner",
    "sys/state",
    "sys/creation_time",
    "sys/running_time",
    "sys/tags",
    "parameters/lr",
    "parameters/batch_size",
    "parameters/optimizer",
    "parameters/dropout",
    "parameters/layers",
    "data/version",
    "eval/acc",
    "eval/loss",
    "eval/f1",
    "train/loss",
    "train/acc",
    "sys/hostname",
    "sys/description",
]


# --- data -------------------------------------------------------------------------


DASH_SERIES = 20


PARTS = ("big", "cmp", "one", "dash")


def generate(runs: int, points: int, dash_runs: int = 100, dash_points: int = 10_000, parts=PARTS) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from projects import services as project_services
    from runs import rollups
    from runs.ingest import record_fields
    from runs.models import Attribute, Project, Run

    owner = User.objects.create_user("bench", password=PASSWORD)
    workspace = project_services.create_workspace(owner, "lab", "Lab")
    now = timezone.now()

    def make_runs(project, count, prefix, state="finished"):
        objs = [
            Run(
                project=project,
                number=i + 1,
                name=f"{prefix}-{i}",
                owner=owner,
                state=state,
                created_at=now - timezone.timedelta(seconds=(count - i) * 30),
                modified_at=now,
                ping_at=now,
                finished_at=now if state == "finished" else None,
            )
            for i in range(count)
        ]
        Run.objects.bulk_create(objs, batch_size=5000)
        Project.objects.filter(pk=project.pk).update(run_counter=count)
        return list(Run.objects.filter(project=project).order_by("number").values_list("pk", flat=True))

    if "big" in parts:
        # 1. the big run table
        started = time.monotonic()
        big = project_services.create_project(owner, workspace, "big", key="BIG")
        make_runs(big, runs, "run")
        fields = [
            ("parameters/lr", "float"),
            ("parameters/batch_size", "int"),
            ("parameters/optimizer", "string"),
            ("parameters/dropout", "float"),
            ("parameters/layers", "int"),
            ("data/version", "string"),
            ("eval/acc", "float"),
            ("eval/loss", "float"),
            ("eval/f1", "float"),
            ("train/loss", "float_series"),
            ("train/acc", "float_series"),
            ("sys/tags", "string_set"),
            ("sys/hostname", "string"),
        ]
        # one INSERT ... SELECT per field, computed from the run id: seconds, not minutes, for 1.3M rows
        x = "((r.id * 7919) % 1000) / 1000.0"
        pg = connection.vendor == "postgresql"
        tags = '\'["sweep", "big"]\'' + ("::jsonb" if pg else "")
        exprs = {
            "parameters/lr": {"float_value": "1.0 / (10 + r.id % 1000)"},
            "parameters/batch_size": {"int_value": "16 * (1 + r.id % 5)"},
            "parameters/optimizer": {
                "string_value": "CASE r.id % 3 WHEN 0 THEN 'adam' WHEN 1 THEN 'sgd' ELSE 'adamw' END"
            },
            "parameters/dropout": {"float_value": f"{x} / 2"},
            "parameters/layers": {"int_value": "2 + r.id % 10"},
            "data/version": {"string_value": "'v' || (r.id % 4)" if not pg else "'v' || (r.id % 4)::text"},
            "eval/acc": {"float_value": f"0.5 + {x} / 2"},
            "eval/loss": {"float_value": f"1 - {x} / 2"},
            "eval/f1": {"float_value": f"0.4 + {x} / 2"},
            "train/loss": {
                "float_value": f"1 - {x} / 2",
                "count": "1000",
                "first_step": "0",
                "last_step": "999",
                "min_value": "0.1",
                "max_value": "2.3",
                "sum_value": "500.0",
                "finite_count": "1000",
            },
            "train/acc": {
                "float_value": x,
                "count": "1000",
                "first_step": "0",
                "last_step": "999",
                "min_value": "0.0",
                "max_value": "0.99",
                "sum_value": "600.0",
                "finite_count": "1000",
            },
            "sys/tags": {"json_value": tags},
            "sys/hostname": {"string_value": "'gpu-' || (r.id % 16)" if not pg else "'gpu-' || (r.id % 16)::text"},
        }
        with transaction.atomic(), connection.cursor() as cursor:
            for path, type_ in fields:
                values = {"count": "0", "finite_count": "0", **exprs[path]}
                names = ", ".join(values)
                cursor.execute(
                    f"INSERT INTO runs_attribute (run_id, project_id, path, type, updated_at, {names}) "
                    f"SELECT r.id, r.project_id, %s, %s, %s, {', '.join(values.values()).replace('%', '%%')} FROM runs_run r WHERE r.project_id = %s",
                    [path, type_, now, big.pk],
                )
        record_fields(big.pk, fields)
        log(f"big: {runs} runs, {runs * len(fields)} fields in {time.monotonic() - started:.0f} s")

    def fill_points(series_id, count):
        if connection.vendor == "postgresql":
            sql = (
                "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                "SELECT %s, x, 1.7e9 + x, 1.0/(1.0 + x/5000.0) + ((x*7919) %% 1000)/20000.0 + CASE WHEN x %% 9973 = 0 THEN 0.5 ELSE 0 END "
                "FROM generate_series(0::bigint, %s) AS x"
            )
        else:
            sql = (
                "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < %s) "
                "SELECT %s, x, 1.7e9 + x, 1.0/(1.0 + x/5000.0) + ((x*7919) %% 1000)/20000.0 + CASE WHEN x %% 9973 = 0 THEN 0.5 ELSE 0 END FROM c"
            )
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(sql, [series_id, count - 1])
            else:
                cursor.execute(sql, [count - 1, series_id])
        Attribute.objects.filter(pk=series_id).update(
            count=count,
            first_step=0,
            last_step=count - 1,
            float_value=0.1,
            min_value=0.0,
            max_value=1.5,
            sum_value=count * 0.3,
            finite_count=count,
        )
        rollups.roll_up(series_id)

    def fill_project_series(project_id, count, value):
        """Every float series of the project gets steps 0..count-1 in one INSERT ... SELECT, then
        its roll-ups in one statement per level (what runs.rollups.roll_up writes, for all at once)."""
        series = "SELECT id FROM runs_attribute WHERE project_id = %s AND type = 'float_series'"
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                    f"SELECT a.id, x, 1.7e9 + x, {value} FROM runs_attribute a, generate_series(0::bigint, %s) AS x "
                    "WHERE a.project_id = %s AND a.type = 'float_series'",
                    [count - 1, project_id],
                )
            else:
                cursor.execute(
                    "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                    "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < %s) "
                    f"SELECT a.id, x, 1.7e9 + x, {value} FROM runs_attribute a, c "
                    "WHERE a.project_id = %s AND a.type = 'float_series'",
                    [count - 1, project_id],
                )
            Attribute.objects.filter(project_id=project_id, type="float_series").update(
                count=count,
                first_step=0,
                last_step=count - 1,
                float_value=0.1,
                min_value=0.0,
                max_value=1.5,
                sum_value=count * 0.3,
                finite_count=count,
            )
        filled = time.monotonic()
        target = rollups.closed_until(count - 1)
        mn, mx, sm, nf = rollups._raw_aggregates()
        table, points = rollups.ROLLUP_TABLE, rollups.POINT_TABLE
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (series_id, level, bucket, min_value, max_value, sum_value, finite_count, "
                "count, first_step, last_step, last_value) "
                "SELECT g.series_id, 0, g.b, g.mn, g.mx, g.sm, g.nf, g.n, g.s0, g.s1, "
                f"(SELECT p.value FROM {points} p WHERE p.series_id = g.series_id AND p.step = g.s1) FROM ("
                f"SELECT series_id, step / {rollups.BASE} AS b, {mn} AS mn, {mx} AS mx, {sm} AS sm, {nf} AS nf, "
                f"count(*) AS n, min(step) AS s0, max(step) AS s1 FROM {points} "
                f"WHERE series_id IN ({series}) AND step < %s GROUP BY series_id, step / {rollups.BASE}) g",
                [project_id, target],
            )
            for level in range(1, rollups.LEVELS):
                k1 = target // rollups.width(level)
                if k1 == 0:
                    break
                below = rollups.width(level - 1)
                cursor.execute(
                    f"INSERT INTO {table} (series_id, level, bucket, min_value, max_value, sum_value, finite_count, "
                    "count, first_step, last_step, last_value) "
                    "SELECT g.series_id, %s, g.b, g.mn, g.mx, g.sm, g.nf, g.n, g.s0, g.s1, r.last_value FROM ("
                    f"SELECT series_id, bucket / {rollups.FACTOR} AS b, min(min_value) AS mn, max(max_value) AS mx, "
                    "sum(sum_value) AS sm, sum(finite_count) AS nf, sum(count) AS n, min(first_step) AS s0, "
                    f"max(last_step) AS s1 FROM {table} WHERE series_id IN ({series}) AND level = %s AND bucket < %s "
                    f"GROUP BY series_id, bucket / {rollups.FACTOR}) g "
                    f"JOIN {table} r ON r.series_id = g.series_id AND r.level = %s AND r.bucket = g.s1 / {below}",
                    [level, project_id, level - 1, k1 * rollups.FACTOR, level - 1],
                )
            cursor.execute(
                f"INSERT INTO {rollups.CURSOR_TABLE} (series_id, rolled_until, updated_at, queued) "
                f"SELECT id, %s, %s, %s FROM runs_attribute WHERE project_id = %s AND type = 'float_series'",
                [target, now, False, project_id],
            )
        log(
            f"  {count:,} points per series in {filled - started:.0f} s, rolled up in {time.monotonic() - filled:.0f} s"
        )

    if "cmp" in parts:
        # 2. compare: 10 runs x (2,000 fields + 50 series of `points` points)
        started = time.monotonic()
        cmp_project = project_services.create_project(owner, workspace, "cmp", key="CMP")
        cmp_ids = make_runs(cmp_project, 10, "cmp")
        catalogue = set()
        for n, run_id in enumerate(cmp_ids):
            attrs = []
            for i in range(2000):
                path = f"config/group{i // 100:02d}/param{i % 100:02d}"
                # a third of the fields differ between runs
                attrs.append(
                    Attribute(
                        run_id=run_id,
                        project_id=cmp_project.pk,
                        path=path,
                        type="float",
                        float_value=float(i if i % 3 else i + n),
                        updated_at=now,
                    )
                )
                catalogue.add((path, "float"))
            for s in range(50):
                path = f"metrics/series{s:02d}"
                attrs.append(
                    Attribute(run_id=run_id, project_id=cmp_project.pk, path=path, type="float_series", updated_at=now)
                )
                catalogue.add((path, "float_series"))
            Attribute.objects.bulk_create(attrs, batch_size=5000)
        fill_project_series(
            cmp_project.pk,
            points,
            "1.0/(1.0 + x/5000.0) + ((x*7919) %% 1000)/20000.0 + CASE WHEN x %% 9973 = 0 THEN 0.5 ELSE 0 END",
        )
        record_fields(cmp_project.pk, sorted(catalogue))
        log(f"cmp: 10 runs, 20,500 fields, {500 * points:,} points in {time.monotonic() - started:.0f} s")

    if "one" in parts:
        # 3. one run with a 1M-point series
        started = time.monotonic()
        one = project_services.create_project(owner, workspace, "one", key="ONE")
        (one_id,) = make_runs(one, 1, "long")
        series = Attribute.objects.create(
            run_id=one_id, project_id=one.pk, path="train/loss", type="float_series", updated_at=now
        )
        record_fields(one.pk, [("train/loss", "float_series")])
        fill_points(series.pk, 1_000_000)
        log(f"one: 1,000,000 points in {time.monotonic() - started:.0f} s")

    if "dash" in parts:
        # 4. the dashboard: dash_runs runs x 20 series of dash_points points, one INSERT ... SELECT for all
        started = time.monotonic()
        dash = project_services.create_project(owner, workspace, "dash", key="DSH")
        dash_ids = make_runs(dash, dash_runs, "sweep")
        paths = [f"train/metric{s:02d}" for s in range(DASH_SERIES)]
        Attribute.objects.bulk_create(
            [
                Attribute(
                    run_id=run_id,
                    project_id=dash.pk,
                    path=path,
                    type="float_series",
                    updated_at=now,
                    count=dash_points,
                    first_step=0,
                    last_step=dash_points - 1,
                    float_value=0.1,
                    min_value=0.0,
                    max_value=1.5,
                    sum_value=dash_points * 0.3,
                    finite_count=dash_points,
                )
                for run_id in dash_ids
                for path in paths
            ],
            batch_size=5000,
        )
        Attribute.objects.bulk_create(
            [
                Attribute(
                    run_id=run_id,
                    project_id=dash.pk,
                    path="parameters/optimizer",
                    type="string",
                    string_value=["adam", "sgd", "adamw"][n % 3],
                    updated_at=now,
                )
                for n, run_id in enumerate(dash_ids)
            ]
        )
        record_fields(dash.pk, [(p, "float_series") for p in paths] + [("parameters/optimizer", "string")])
        fill_project_series(
            dash.pk, dash_points, "1.0/(1.0 + x/500.0) + ((x*7919 + a.id*31) %% 1000)/20000.0 + (a.id %% 97)/500.0"
        )
        log(
            f"dash: {dash_runs} runs x {DASH_SERIES} series of {dash_points:,} points in {time.monotonic() - started:.0f} s"
        )


# --- measuring ----------------------------------------------------------------------

LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
"""


def login(context, base):
    import requests

    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    session = requests.Session()
    for cookie in context.cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    return page, session


def timed_gets(session, url, n, check=None) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = session.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if check:
            check(response)
    return times


def new_tab(context):
    """A tab for a timed page load, opened ``TAB_SETTLE_S`` before: its own start-up is over."""
    page = context.new_page()
    page.wait_for_timeout(TAB_SETTLE_S * 1000)
    return page


def response_bytes(page, part: str) -> list[int]:
    """The decoded sizes of the page's responses whose address holds ``part``, from the browser's
    resource timing once the page is measured (reading the bodies over the DevTools protocol while
    the page loads would add that work to the measurement)."""
    return page.evaluate(
        "(part) => performance.getEntriesByType('resource').filter((e) => e.name.includes(part))"
        ".map((e) => e.decodedBodySize)",
        part,
    )


def measure(base: str, pages: set[str], repeat: int = 1) -> dict:
    """One round of measurements against the server at ``base``; ``repeat`` run-page loads."""
    from playwright.sync_api import sync_playwright

    results: dict = {}
    columns = "&".join(f"c={c}" for c in TABLE_COLUMNS)
    table_url = f"{base}/w/lab/big/?{columns}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--enable-precise-memory-info",
            ],
        )
        # bypass_csp: Playwright's wait_for_function polls through eval, which the pages' CSP forbids
        context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
        page, session = login(context, base)

        # how loaded the machine is: the same server's cheapest request
        results["baseline_healthz_ms"] = round(median(timed_gets(session, f"{base}/healthz", 7)), 1)
        results["load_average_1m"] = os.getloadavg()[0]

        if "table" in pages:

            def fifty_rows(response):
                assert response.status_code == 200 and response.text.count('<tr id="row-') == 50, response.status_code

            results["table_server_ms"] = round(median(timed_gets(session, table_url, 7, fifty_rows)), 1)
            results["table_sorted_by_attribute_server_ms"] = round(
                median(timed_gets(session, table_url + "&sort=-eval/acc", 3)), 1
            )
            results["table_page_2_server_ms"] = round(median(timed_gets(session, table_url + "&page=2", 3)), 1)
            fcps = []
            for _ in range(3):
                page.goto(table_url)
                page.wait_for_function(
                    "performance.getEntriesByName('first-contentful-paint').length > 0", timeout=10_000
                )
                fcps.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            results["table_fcp_ms"] = round(median(fcps), 1)

        if "compare" in pages:
            cmp_ids = ",".join(f"CMP-{i}" for i in range(1, 11))
            page = new_tab(context)
            page.add_init_script(LONG_TASKS)
            t0 = time.perf_counter()
            page.goto(f"{base}/w/lab/cmp/compare?runs={cmp_ids}")
            page.wait_for_selector("figure.chart[data-drawn]", timeout=60_000)
            results["compare_first_chart_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0", timeout=10_000)
            results["compare_fcp_ms"] = round(
                page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"), 1
            )
            t0 = time.perf_counter()
            for _ in range(200):
                page.mouse.wheel(0, 600)
                page.wait_for_timeout(60)
                total = page.locator("figure.chart").count()
                drawn = page.locator("figure.chart[data-drawn]").count()
                if total >= 50 and drawn >= 50:
                    break
            page.wait_for_function(
                "document.querySelectorAll('figure.chart[data-drawn]').length >= 50", timeout=120_000
            )
            results["compare_all_50_charts_drawn_s"] = round(time.perf_counter() - t0, 1)
            long_tasks = page.evaluate("window.__longTasks")
            results["compare_longest_task_ms"] = round(max(long_tasks or [0]), 1)
            results["compare_long_tasks_over_50ms"] = len(long_tasks)
            cdp = context.new_cdp_session(page)
            cdp.send("HeapProfiler.collectGarbage")
            heap = cdp.send("Runtime.getHeapUsage")
            results["compare_js_heap_mb"] = round(heap["usedSize"] / 2**20, 1)
            diff_t0 = time.perf_counter()
            page.locator("#only-diff").uncheck()
            page.wait_for_selector("#diff-table >> text=config/group00/param00")
            results["compare_diff_all_fields_ms"] = round((time.perf_counter() - diff_t0) * 1000, 1)

        if "run" in pages:
            # a fresh page each time; the median of `repeat` loads
            drawn, chart_bytes = [], []
            for _ in range(repeat):
                page = new_tab(context)
                t0 = time.perf_counter()
                page.goto(f"{base}/w/lab/one/runs/ONE-1/")
                page.wait_for_selector('figure.chart[data-path="train/loss"][data-drawn]', timeout=60_000)
                drawn.append((time.perf_counter() - t0) * 1000)
                chart_bytes.append(sum(response_bytes(page, "chart-data")))
                page.close()
            results["run_page_1m_chart_drawn_ms"] = round(median(drawn), 1)
            results["run_page_1m_chart_drawn_all_ms"] = [round(t) for t in drawn]
            results["run_page_chart_data_bytes"] = int(median(chart_bytes))

        if "dashboard" in pages:
            # every chart in view at once (1,920 x 2,600): the worst case, no chart waits for a scroll
            tall = browser.new_context(viewport={"width": 1920, "height": 2600}, bypass_csp=True)
            tall.add_cookies(context.cookies())
            charts = "&".join(f"chart=train/metric{s:02d}" for s in range(DASH_SERIES))
            url = f"{base}/w/lab/dash/dashboard?{charts}"
            drawn, first, requests_made, data_bytes = [], [], [], []
            runs_drawn = 0
            for _ in range(repeat):
                page = new_tab(tall)
                t0 = time.perf_counter()
                if page.goto(url).status != 200:
                    break  # a tree without the dashboard (a baseline from before it)
                page.wait_for_selector("figure.chart[data-drawn]", timeout=60_000)
                first.append((time.perf_counter() - t0) * 1000)
                page.wait_for_function(
                    f"document.querySelectorAll('figure.chart[data-drawn]').length >= {DASH_SERIES}", timeout=120_000
                )
                drawn.append((time.perf_counter() - t0) * 1000)
                runs_drawn = page.evaluate(
                    "Math.min(...Array.from(window.RunstoreCharts.charts.values()).map((s) => s.runs.length))"
                )
                seen = response_bytes(page, "dashboard/chart-data")
                requests_made.append(len(seen))
                data_bytes.append(sum(seen))
                page.close()
            tall.close()
            if not drawn:
                results["dashboard_all_20_charts_drawn_ms"] = None
                drawn = None
        if "dashboard" in pages and drawn:
            results["dashboard_runs_per_chart"] = runs_drawn
            results["dashboard_first_chart_ms"] = round(median(first), 1)
            results["dashboard_all_20_charts_drawn_ms"] = round(median(drawn), 1)
            results["dashboard_all_20_charts_drawn_all_ms"] = [round(t) for t in drawn]
            results["dashboard_chart_data_requests"] = int(median(requests_made))
            results["dashboard_chart_data_bytes"] = int(median(data_bytes))
        browser.close()
    return results


def serve(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """gunicorn (2 workers x 4 threads) serving the code in ``tree``; returns (process, base URL)."""
    import requests

    port = free_port()
    server = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "gunicorn"),
            "tracker.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--threads",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=tree,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    return server, base


def export_tree(ref: str) -> Path:
    """The code of git ``ref`` in a temporary directory (``git archive``; the working tree is not touched)."""
    target = Path(tempfile.mkdtemp(prefix="runstore-ui-baseline-"))
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def summarise(rounds: list[dict]) -> dict:
    """Median of each numeric measure over the rounds; the per-sample lists of every round, in order."""
    out: dict = {}
    for key in rounds[0]:
        if isinstance(rounds[0][key], list):
            out[key] = [value for r in rounds for value in r.get(key) or []]
            continue
        values = [r[key] for r in rounds if isinstance(r.get(key), (int, float))]
        out[key] = round(median(values), 1) if values else rounds[0][key]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--keep", help="reuse (or keep) this data directory instead of a temporary one")
    parser.add_argument("--pg-db", default=PG_UI_DB, help=f"PostgreSQL scratch database (default {PG_UI_DB})")
    parser.add_argument("--dash-runs", type=int, default=100)
    parser.add_argument("--dash-points", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    parser.add_argument("--parts", default=",".join(PARTS), help="which projects to generate: big,cmp,one,dash")
    parser.add_argument(
        "--pages", default="table,compare,run,dashboard", help="which of table,compare,run,dashboard to measure"
    )
    parser.add_argument("--repeat", type=int, default=5, help="run-page loads per round (median)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of measurements (medians over them)")
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF_OR_DIR",
        help="also serve the code of this commit (git archive) or source directory on the same data, rounds interleaved, for before/after",
    )
    parser.add_argument(
        "--current",
        metavar="DIR",
        default=str(REPO),
        help="serve the code in this source directory as the current version (default: this checkout)",
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.dash_points = min(args.runs, 10_000), min(args.points, 10_000), 1_000
    if args.generate:
        generate(args.runs, args.points, args.dash_runs, args.dash_points, set(args.parts.split(",")))
        return
    pages = {p.strip() for p in args.pages.split(",") if p.strip()}

    var = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="runstore-ui-bench-"))
    var.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RUNSTORE_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "tracker.settings",
        "RUNSTORE_TIMESCALEDB": "auto",
    }
    if args.db == "postgres":
        from bench.common import pg_recreate, pg_url

        if not (var / "generated").exists():
            pg_recreate(args.pg_db)
        env["DATABASE_URL"] = pg_url(args.pg_db)
    else:
        env["DATABASE_URL"] = f"sqlite:///{var}/bench.sqlite3"
    if not (var / "generated").exists():
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
        log("generating data…")
        subprocess.run(
            [
                PYTHON,
                __file__,
                "--generate",
                "--runs",
                str(args.runs),
                "--points",
                str(args.points),
                "--dash-runs",
                str(args.dash_runs),
                "--dash-points",
                str(args.dash_points),
                "--parts",
                args.parts,
            ],
            cwd=REPO,
            env=env,
            check=True,
        )
        (var / "generated").write_text(
            json.dumps(
                {
                    "runs": args.runs,
                    "points_per_series": args.points,
                    "dashboard_runs": args.dash_runs,
                    "dashboard_points_per_series": args.dash_points,
                }
            )
        )
    trees = {"current": Path(args.current)}
    if args.baseline:
        baseline = Path(args.baseline)
        trees = {
            "baseline": baseline if baseline.is_dir() else export_tree(args.baseline),
            "current": Path(args.current),
        }
    servers = {}
    try:
        for name, tree in trees.items():
            servers[name] = serve(tree, env)
        rounds: dict[str, list[dict]] = {name: [] for name in trees}
        for index in range(args.rounds):
            # alternate which server goes first: the second of a pair meets the first one's leftovers
            for name in list(trees) if index % 2 == 0 else list(trees)[::-1]:
                log(f"round {index + 1}/{args.rounds}: {name}")
                rounds[name].append(measure(servers[name][1], pages, args.repeat))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    try:  # what the data directory holds, when it was generated by an earlier run
        generated = json.loads((var / "generated").read_text())
    except ValueError:
        generated = {"runs": args.runs, "points_per_series": args.points}
    meta = {
        "db": args.db,
        **generated,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    if args.baseline:
        results = {**meta, "baseline_ref": args.baseline, **{name: summarise(r) for name, r in rounds.items()}}
        results["ratios_current_over_baseline"] = {
            key: round(results["current"][key] / results["baseline"][key], 2)
            for key in results["current"]
            if key.endswith("_ms")
            and isinstance(results["current"][key], (int, float))
            and results["baseline"].get(key)
        }
    else:
        results = {**meta, **summarise(rounds["current"])}
    print(json.dumps(results, indent=2))
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    suffix = "_vs_baseline" if args.baseline else ""
    (out / f"ui_{args.db}{suffix}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
