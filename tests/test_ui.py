import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs import services
from runs.models import Attribute, Run, SavedView

from .conftest import batch
from .roles import role_matrix


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def ui_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def upload(user, run, name, content: bytes, mime):
    blob = SimpleUploadedFile(name, content, content_type=mime)
    blob.sha256 = hashlib.sha256(content).hexdigest()
    return services.store_upload(user, run, blob)


@pytest.fixture
def rich_run(run, owner, owner_api):
    """``run`` with parameters, series, a log, and files to preview."""
    files = {
        "report": ("report.html", b"<html><script>alert(1)</script><p>hi</p></html>", "text/html"),
        "table": ("metrics.csv", b"epoch,loss\n1,0.5\n2,0.25\n", "text/csv"),
        "code": ("train.py", b"def main():\n    return 42\n", "text/x-python"),
        "notebook": ("analysis.ipynb", b'{"cells": []}', "application/json"),
    }
    ops = [
        {"op": "assign", "path": "parameters", "value": {"lr": 0.01, "batch_size": 64, "optimizer": "adam"}},
        {
            "op": "assign",
            "path": "source_code/git",
            "value": {"commit": "a" * 40, "remote_url": "git@github.com:acme/vision.git"},
        },
        {"op": "append", "path": "train/loss", "values": [1.0 / (i + 1) for i in range(500)]},
        {"op": "append", "path": "monitoring/cpu", "values": [10.0, 20.0, 30.0]},
        {"op": "append", "path": "stdout", "kind": "string", "values": [f"epoch {i} done" for i in range(30)]},
    ]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 32
    image = upload(owner, run, "sample.png", png, "image/png")
    ops.append(
        {
            "op": "append",
            "path": "images/samples",
            "kind": "file",
            "values": [{"sha256": image.sha256, "name": "s.png", "mime_type": "image/png"}] * 3,
        }
    )
    for path, (name, content, mime) in files.items():
        blob = upload(owner, run, name, content, mime)
        ops.append({"op": "upload", "path": f"files/{path}", "sha256": blob.sha256, "name": name, "mime_type": mime})
    assert batch(owner_api, run, ops).status_code == 200
    return run


def page(run, suffix=""):
    return f"/w/acme/vision/runs/{run.human_id}/{suffix}"


# ---- run table ---------------------------------------------------------------


def test_login_page_and_login(client, owner):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "owner", "password": "pw-owner"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_run_list_shows_runs_with_bounded_queries(logged_in, project, owner, django_assert_max_num_queries):
    for index in range(60):
        services.create_run(owner, project, name=f"run-{index}", tags=["t"])
    with django_assert_max_num_queries(14):
        response = logged_in.get("/w/acme/vision/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "run-59" in html and "run-10" in html and "run-9<" not in html
    assert "page 1" in html and "&amp;page=2" in html and "fragment=count" in html
    count = logged_in.get("/w/acme/vision/?fragment=count", HTTP_HX_REQUEST="true").content.decode()
    assert "<strong>60</strong> runs" in count
    fragment = logged_in.get("/w/acme/vision/?page=2", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode() and "run-5" in fragment.content.decode()
    assert "HX-Request" in fragment["Vary"]


def test_fifty_columns_of_a_hundred_rows_render_in_a_bounded_number_of_queries(
    logged_in, project, owner, owner_api, django_assert_max_num_queries
):
    paths = [f"metrics/m{i:02d}" for i in range(44)]
    for index in range(100):
        run, _ = services.create_run(owner, project, name=f"r{index}")
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[{"op": "assign", "path": p, "value": index + i / 100} for i, p in enumerate(paths)],
        )
    columns = "&".join(
        f"c={p}" for p in ["sys/id", "sys/name", "sys/owner", "sys/state", "sys/creation_time", "sys/tags", *paths]
    )
    with django_assert_max_num_queries(14):
        response = logged_in.get(f"/w/acme/vision/?per=100&sort=-metrics/m03&{columns}")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<tr id="row-') == 100
    assert "metrics/m43" in html and "99.43" in html
    assert html.index(">r99<") < html.index(">r0<")  # sorted by metrics/m03, descending


def test_sort_by_attribute_path_and_sys_columns(logged_in, project, owner):
    for lr in (0.3, 0.1, 0.2):
        run, _ = services.create_run(owner, project, name=f"lr-{lr}")
        services.apply_batch(
            run.owner, run, stream="s", seq=0, raw_ops=[{"op": "assign", "path": "parameters/lr", "value": lr}]
        )
    services.create_run(owner, project, name="no-lr")
    html = logged_in.get("/w/acme/vision/?c=sys/name&c=parameters/lr&sort=parameters/lr").content.decode()
    order = [html.index(f">{name}<") for name in ("lr-0.1", "lr-0.2", "lr-0.3", "no-lr")]
    assert order == sorted(order), "ascending, missing values last"
    html = logged_in.get("/w/acme/vision/?c=sys/name&c=parameters/lr&sort=-parameters/lr").content.decode()
    order = [html.index(f">{name}<") for name in ("lr-0.3", "lr-0.2", "lr-0.1", "no-lr")]
    assert order == sorted(order), "descending, missing values still last"
    html = logged_in.get("/w/acme/vision/?sort=sys/name").content.decode()
    assert html.index(">lr-0.1<") < html.index(">no-lr<")
    assert 'aria-sort="ascending"' in html
    for path in ("sys/running_time", "-sys/owner", "sys/id", "nonexistent/path"):
        assert logged_in.get(f"/w/acme/vision/?sort={path}").status_code == 200


def test_column_chooser_lists_paths_by_namespace(logged_in, rich_run):
    html = logged_in.get("/w/acme/vision/columns?path_q=lr&c=sys/id", HTTP_HX_REQUEST="true").content.decode()
    assert "parameters/lr" in html and "<h3>parameters</h3>" in html and "train/loss" not in html
    assert "c=sys%2Fid&amp;c=parameters%2Flr" in html


def test_saved_views_are_private_or_shared(world, ui_for, rich_run, owner):
    client = ui_for(owner)
    response = client.post(
        "/w/acme/vision/views",
        {"name": "lr view", "c": ["sys/id", "parameters/lr"], "sort": "-parameters/lr", "widths": "parameters/lr=180"},
    )
    assert response.status_code == 302
    view = SavedView.objects.get(name="lr view")
    assert (
        view.columns == [{"path": "sys/id", "width": None}, {"path": "parameters/lr", "width": 180}] and not view.shared
    )
    html = client.get(f"/w/acme/vision/?view={view.pk}").content.decode()
    assert "0.01" in html and 'data-width="180"' in html and "lr view" in html

    def lists_it(response):
        return "lr view" in response.content.decode()

    def hides_it(response):
        return not lists_it(response)

    hidden = {"contributor": hides_it, "viewer": hides_it, "stranger": hides_it}
    role_matrix(world, get("/w/acme/vision/"), UI_PAGE, ui=True, check={**hidden, "owner": lists_it})
    client = ui_for(owner)
    client.post("/w/acme/vision/views", {"name": "lr view", "shared": "1", "c": ["sys/id"]})
    shown = dict.fromkeys(["owner", "contributor", "viewer"], lists_it)
    role_matrix(world, get("/w/acme/vision/"), UI_PAGE, ui=True, check={**shown, "stranger": hides_it})
    kept = dict.fromkeys(["stranger", "viewer", "contributor"], lambda _: SavedView.objects.filter(pk=view.pk).exists())
    role_matrix(
        world,
        post("/w/acme/vision/views", {"delete": view.pk}),
        {**UI_WRITE, "contributor": 403},
        ui=True,
        check=kept,
    )
    assert not SavedView.objects.exists()


def test_bulk_tag_delete_and_undo(logged_in, project, owner):
    runs = [services.create_run(owner, project, name=f"r{i}")[0] for i in range(3)]
    ids = [r.human_id for r in runs[:2]]
    response = logged_in.post("/w/acme/vision/", {"action": "tag", "tag": "keep", "runs": ids}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Tagged 2 run(s)" in response.content.decode()
    assert logged_in.get(page(runs[0])).content.decode().count(">keep<") == 1
    response = logged_in.post("/w/acme/vision/", {"action": "delete", "runs": ids}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Moved 2 run(s) to the trash" in html and "Undo" in html
    assert Run.objects.filter(deleted_at__isnull=True).count() == 1
    assert "r0" in logged_in.get("/w/acme/vision/trash").content.decode()
    logged_in.post("/w/acme/vision/", {"action": "restore", "runs": ids}, HTTP_HX_REQUEST="true")
    assert Run.objects.filter(deleted_at__isnull=True).count() == 3
    response = logged_in.post("/w/acme/vision/", {"action": "untag", "tag": "keep", "runs": ids})
    assert response.status_code == 302


def test_live_rows_of_running_runs(logged_in, run):
    html = logged_in.get("/w/acme/vision/").content.decode()
    # the poller sends the page's running rows (app.js reads them from the table)
    assert 'id="live-poll"' in html and 'hx-trigger="every 5s"' in html
    assert f'id="row-{run.pk}" data-url' in html and 'class="running"' in html
    fragment = logged_in.get(
        f"/w/acme/vision/?live={run.human_id}&runs={run.human_id}", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert f'id="row-{run.pk}" hx-swap-oob="true"' in fragment and "checked" in fragment
    services.update_run(run.owner, run, state="finished")
    fragment = logged_in.get(f"/w/acme/vision/?live={run.human_id}", HTTP_HX_REQUEST="true").content.decode()
    assert "finished" in fragment and f'id="row-{run.pk}"' in fragment and 'class="running"' not in fragment


# ---- run page ------------------------------------------------------------------


def test_run_page_has_header_charts_logs_files_and_lazy_attribute_tree(logged_in, rich_run):
    html = logged_in.get(page(rich_run)).content.decode()
    assert "baseline" in html and "running" in html
    assert "https://github.com/acme/vision/commit/" + "a" * 40 in html
    assert (
        'data-path="train/loss"' in html
        and "monitoring/cpu" not in html.split('id="monitoring"')[0].split('id="charts"')[1]
    )
    assert "stdout" in html and "report.html" in html and "metrics.csv" in html
    assert "parameters" in html and "fragment=namespace&ns=parameters" in html
    fragment = logged_in.get(
        page(rich_run, "?fragment=namespace&ns=parameters"), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "lr" in fragment and "0.01" in fragment and "<html" not in fragment
    monitoring = logged_in.get(
        page(rich_run, "?fragment=charts&group=monitoring"), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'data-path="monitoring/cpu"' in monitoring and "train/loss" not in monitoring


def test_run_page_field_search(logged_in, rich_run):
    fragment = logged_in.get(page(rich_run, "?fragment=fields&q=lr"), HTTP_HX_REQUEST="true").content.decode()
    assert "parameters" in fragment and "0.01" in fragment and "train/loss" not in fragment and "<html" not in fragment


def test_chart_data_is_downsampled_with_envelope(logged_in, rich_run):
    data = logged_in.get(f"/w/acme/vision/chart-data?runs={rich_run.human_id}&path=train/loss&buckets=50").json()
    series = data["runs"][0]
    assert len(series["steps"]) == 50 and series["max"][0] == 1.0 and series["min"][0] < series["max"][0]
    zoomed = logged_in.get(
        f"/w/acme/vision/chart-data?runs={rich_run.human_id}&path=train/loss&buckets=50&from_step=100&to_step=149&x=time"
    ).json()["runs"][0]
    assert zoomed["steps"][0] == 100 and len(zoomed["steps"]) == 50 and len(zoomed["times"]) == 50
    live = logged_in.get(f"/w/acme/vision/chart-data?runs={rich_run.human_id}&path=train/loss&from_step=600").json()[
        "runs"
    ][0]
    assert live["steps"] == [] and live["last_step"] == 499


def test_log_view_tail_and_search(logged_in, rich_run):
    html = logged_in.get(page(rich_run, "log?path=stdout"), HTTP_HX_REQUEST="true").content.decode()
    assert "epoch 0 done" in html and "epoch 29 done" in html and 'hx-trigger="every 5s"' in html
    html = logged_in.get(page(rich_run, "log?path=stdout&q=epoch 2"), HTTP_HX_REQUEST="true").content.decode()
    assert "epoch 21 done" in html and "epoch 3 done" not in html


def test_file_previews(logged_in, rich_run):
    def preview(path):
        return logged_in.get(page(rich_run, f"preview?path=files/{path}"), HTTP_HX_REQUEST="true").content.decode()

    assert "<th>epoch</th>" in preview("table") and "<td>0.25</td>" in preview("table")
    assert 'class="highlight"' in preview("code") and "main" in preview("code")
    html = preview("report")
    assert '<iframe src="' in html and 'sandbox=""' in html
    assert "download" in preview("notebook")
    raw = logged_in.get(page(rich_run, "raw?path=files/report"))
    assert b"<p>hi</p>" in b"".join(raw.streaming_content)
    assert raw["Content-Security-Policy"].split(";")[0] == "sandbox" and raw["Content-Disposition"].startswith("inline")
    ranged = logged_in.get(page(rich_run, "raw?path=files/table"), HTTP_RANGE="bytes=0-4")
    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == b"epoch"


def test_edit_run_header(logged_in, rich_run):
    response = logged_in.post(
        page(rich_run, "edit"), {"name": "renamed", "description": "notes", "tags": "a, b"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and "renamed" in html and ">a<" in html and "<html" not in html
    rich_run.refresh_from_db()
    assert rich_run.description == "notes"


# ---- compare -----------------------------------------------------------------------


def test_compare_view_charts_diff_and_values(logged_in, project, owner, django_assert_max_num_queries):
    runs = []
    for index in range(3):
        run, _ = services.create_run(owner, project, name=f"c{index}")
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters", "value": {"lr": 0.1 * (index + 1), "seed": 7}},
                {"op": "append", "path": "train/loss", "values": [1.0, 0.5]},
            ],
        )
        runs.append(run)
    ids = ",".join(r.human_id for r in runs)
    with django_assert_max_num_queries(12):
        html = logged_in.get(f"/w/acme/vision/compare?runs={ids}").content.decode()
    assert 'data-path="train/loss"' in html and "fragment=diff" in html and "fragment=plots" in html
    diff = logged_in.get(f"/w/acme/vision/compare?runs={ids}&fragment=diff", HTTP_HX_REQUEST="true").content.decode()
    assert "parameters/lr" in diff and "parameters/seed" not in diff
    plots = logged_in.get(f"/w/acme/vision/compare?runs={ids}&fragment=plots", HTTP_HX_REQUEST="true").content.decode()
    assert 'name="params" value="parameters/lr" checked' in plots and "parallel" in plots
    every = logged_in.get(
        f"/w/acme/vision/compare?runs={ids}&fragment=diff&all=1", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "parameters/seed" in every and "<html" not in every
    data = logged_in.get(f"/w/acme/vision/compare?runs={ids}&fragment=values&p=parameters/lr&p=missing").json()
    assert [r["values"][0] for r in data["runs"]] == pytest.approx([0.1, 0.2, 0.3]) and data["runs"][0]["values"][
        1
    ] is None
    chart = logged_in.get(f"/w/acme/vision/chart-data?runs={ids}&path=train/loss&envelope=0").json()
    assert [r["id"] for r in chart["runs"]] == [r.human_id for r in runs] and "min" not in chart["runs"][0]


# ---- workspace pages ---------------------------------------------------------------


def test_workspace_pages(logged_in, project):
    assert "acme/vision" in logged_in.get("/").content.decode()
    html = logged_in.get("/w/acme/").content.decode()
    assert "acme/vision" in html and "contributor" in html


def test_unknown_run_is_404(logged_in, project):
    assert logged_in.get("/w/acme/vision/runs/VIS-999/").status_code == 404
    assert logged_in.get("/w/acme/vision/runs/XYZ-1/").status_code == 404


# ---- permissions -------------------------------------------------------------------


def all_pages(run):
    rid = run.human_id
    return [
        "/w/acme/",
        "/w/acme/vision/",
        "/w/acme/vision/columns?path_q=",
        "/w/acme/vision/trash",
        f"/w/acme/vision/compare?runs={rid}",
        f"/w/acme/vision/chart-data?runs={rid}&path=train/loss",
        page(run),
        page(run, "?fragment=namespace&ns=parameters"),
        page(run, "log?path=stdout"),
        page(run, "preview?path=files/table"),
        page(run, "raw?path=files/table"),
        f"/w/acme/vision/?live={rid}",
    ]


UI_PAGE = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 302}
UI_WRITE = {"owner": 302, "contributor": 302, "viewer": 403, "stranger": 404, "anonymous": 302}


def get(url, **headers):
    return lambda client: client.get(url, **headers)


def post(url, data):
    return lambda client: client.post(url, data)


def test_every_page_and_fragment_answers_each_role(world, rich_run):
    for url in all_pages(rich_run):
        role_matrix(world, get(url), UI_PAGE, ui=True)
        role_matrix(world, get(url, HTTP_HX_REQUEST="true"), UI_PAGE, ui=True)


def test_only_writers_are_offered_the_edit(world, rich_run):
    offered = {role: lambda response: "Edit name" in response.content.decode() for role in ("contributor", "owner")}
    role_matrix(
        world,
        get(page(rich_run)),
        UI_PAGE,
        ui=True,
        check={**offered, "viewer": lambda response: "Edit name" not in response.content.decode()},
    )


def test_writers_edit_and_act_in_bulk_viewers_get_403(world, rich_run):
    def current():
        return Run.objects.get(pk=rich_run.pk)

    def tags():
        return Attribute.objects.get(run=rich_run, path="sys/tags").json_value

    role_matrix(
        world,
        post(page(rich_run, "edit"), {"name": "x"}),
        UI_WRITE,
        ui=True,
        check={"viewer": lambda _: current().name == "baseline", "contributor": lambda _: current().name == "x"},
    )
    refused = {
        "tag": lambda _: "t" not in tags(),
        "delete": lambda _: current().deleted_at is None,
        "restore": lambda _: current().deleted_at is not None,
    }
    done = {
        "tag": lambda _: "t" in tags(),
        "delete": lambda _: current().deleted_at is not None,
        "restore": lambda _: current().deleted_at is None,
    }
    for action in ("tag", "delete", "restore"):
        role_matrix(
            world,
            post("/w/acme/vision/", {"action": action, "tag": "t", "runs": rich_run.human_id}),
            UI_WRITE,
            ui=True,
            check={"viewer": refused[action], "contributor": done[action]},
        )


def test_members_keep_private_saved_views_strangers_get_404(world, project):
    role_matrix(
        world,
        post("/w/acme/vision/views", {"name": "mine", "c": ["sys/id"]}),
        {**UI_WRITE, "viewer": 302},
        ui=True,
        check={"stranger": lambda _: not SavedView.objects.exists()},
    )
    owners = SavedView.objects.values_list("owner__username", "shared")
    assert sorted(owners) == [("contributor", False), ("owner", False), ("viewer", False)]


def test_admin_lists_every_model(client, db):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", "r@x.org", "pw")
    client.force_login(admin)
    for url in (
        "/admin/runs/run/",
        "/admin/runs/attribute/",
        "/admin/runs/blob/",
        "/admin/projects/workspace/",
        "/admin/projects/project/",
        "/admin/projects/membership/",
        "/admin/accounts/apitoken/",
        "/admin/runs/runbatch/",
    ):
        assert client.get(url).status_code == 200, url


# ---- filter and group with the query engine ---------------------------------------


@pytest.fixture
def swept(project, owner):
    for index, (optimizer, lr) in enumerate([("adam", 0.1), ("adam", 0.01), ("sgd", 0.1), ("sgd", 0.001)]):
        run, _ = services.create_run(owner, project, name=f"{optimizer}-{index}")
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {"op": "assign", "path": "parameters", "value": {"optimizer": optimizer, "lr": lr}},
                {"op": "assign", "path": "eval/acc", "value": 0.5 + index / 10},
            ],
        )


def test_filter_keeps_the_query_in_the_url_and_shows_errors_inline(logged_in, swept):
    html = logged_in.get(
        "/w/acme/vision/", {"q": 'parameters/optimizer = "adam" and parameters/lr < 0.05'}
    ).content.decode()
    assert ">adam-1<" in html and ">adam-0<" not in html and ">sgd-3<" not in html
    count = logged_in.get(
        "/w/acme/vision/", {"q": 'parameters/optimizer = "adam" and parameters/lr < 0.05', "fragment": "count"}
    ).content.decode()
    assert "<strong>1</strong> runs match" in count
    html = logged_in.get("/w/acme/vision/", {"q": "parameters/lr >"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="query-error"' in html and "at character 15" in html and 'aria-invalid="true"' in html
    # the table stays, empty, under the error: never the unfiltered runs with their count
    assert 'id="runs-grid"' in html and ">sgd-3<" not in html and ">adam-0<" not in html
    assert "no runs: the filter has an error" in html
    assert "/api/v1/runs/suggest?project=acme%2Fvision" in html


def test_group_by_with_counts_and_aggregates(logged_in, swept):
    html = logged_in.get(
        "/w/acme/vision/", {"group": "parameters/optimizer", "c": ["sys/name", "eval/acc"]}
    ).content.decode()
    assert html.count('class="group-head"') == 2
    assert "<strong>adam</strong> <small>2 runs · eval/acc avg 0.55" in html
    assert html.index(">adam-1<") < html.index("<strong>sgd</strong>") < html.index(">sgd-3<")


def test_suggestions_endpoint_answers_the_editor(logged_in, swept):
    data = logged_in.get("/api/v1/runs/suggest", {"project": "acme/vision", "text": "param", "cursor": 5}).json()
    assert any(item["insert"].startswith("parameters/") for item in data["items"])


def test_image_gallery_and_notebook_preview(logged_in, rich_run):
    from runs import processing
    from runs.models import BlobPreview, FileEntry

    html = logged_in.get(page(rich_run)).content.decode()
    assert f"/runs/{rich_run.human_id}/gallery" in html
    gallery = logged_in.get(page(rich_run, "gallery?path=images/samples"), HTTP_HX_REQUEST="true").content.decode()
    assert (
        'data-steps="0,1,2"' in gallery
        and 'type="range"' in gallery
        and "thumb?path=images%2Fsamples&amp;step=2" in gallery
        and "raw?path=images%2Fsamples&amp;step=2" in gallery
    )
    image = logged_in.get(page(rich_run, "raw?path=images/samples&step=1"))
    assert image["Content-Type"] == "image/png" and b"".join(image.streaming_content).startswith(b"\x89PNG")
    notebook = FileEntry.objects.get(attribute__run=rich_run, attribute__path="files/notebook")
    assert "not rendered yet" in logged_in.get(page(rich_run, "preview?path=files/notebook")).content.decode()
    assert processing.process_blob(notebook.blob_id) == "ready"  # what the media worker does
    assert BlobPreview.objects.filter(blob=notebook.blob, kind="html").exists()
    html = logged_in.get(page(rich_run, "preview?path=files/notebook")).content.decode()
    assert (
        f"/api/v1/runs/{rich_run.uuid}/files/preview?path=files%2Fnotebook&amp;kind=html" in html
        and 'sandbox=""' in html
    )


# ---- paging: infinite scroll and "load more" inside groups -------------------------------


def rows_of(html: str) -> list[str]:
    import re

    return re.findall(r'name="runs" value="([A-Z]+-\d+)"', html)


def follow(html: str, pattern: str) -> str:
    """The (unescaped) URL of the first ``hx-get`` on an element matching ``pattern``."""
    import html as html_lib
    import re

    match = re.search(pattern + r'[^>]*?hx-get="([^"]+)"', html) or re.search(r'hx-get="([^"]+)"[^>]*?' + pattern, html)
    assert match, pattern
    return html_lib.unescape(match.group(1))


@pytest.fixture
def many_runs(project, owner):
    """70 runs: 60 with optimizer "adam" (more than a page of a group), 10 with "sgd"; lr decides the sort."""
    runs = []
    for index in range(70):
        run, _ = services.create_run(owner, project, name=f"m{index}")
        services.apply_batch(
            run.owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {
                    "op": "assign",
                    "path": "parameters",
                    "value": {"optimizer": "adam" if index < 60 else "sgd", "lr": (index * 37) % 70 / 100},
                },
            ],
        )
        runs.append(run)
    return runs


def test_flat_table_scrolls_into_the_next_page_with_the_pager_kept(logged_in, many_runs):
    html = logged_in.get("/w/acme/vision/?per=25&sort=parameters/lr&c=sys/id&c=parameters/lr").content.decode()
    seen = rows_of(html)
    assert len(seen) == 25
    assert 'class="load-more"' in html and 'hx-trigger="revealed"' in html
    assert 'rel="next"' in html and "page=2" in html  # the numbered pager stays as the fallback
    while 'class="load-more"' in html:
        url = follow(html, 'class="load-more"')
        assert "sort=parameters%2Flr" in url and "fragment=rows" in url
        html = logged_in.get("/w/acme/vision/" + url, HTTP_HX_REQUEST="true").content.decode()
        assert "<html" not in html and 'id="pager" aria-label="Pages" hx-swap-oob="true"' in html
        seen += rows_of(html)
    assert "pages 1–3" in html and 'rel="next"' not in html
    expected = [r.human_id for r in sorted(many_runs, key=lambda r: ((many_runs.index(r) * 37) % 70, -r.pk))]
    assert seen == expected, "every run once, in the table's order"


def test_a_page_link_reproduces_that_page(logged_in, many_runs):
    first = rows_of(logged_in.get("/w/acme/vision/?per=25").content.decode())
    second = logged_in.get("/w/acme/vision/?per=25&page=2").content.decode()
    assert "page 2" in second and 'rel="prev"' in second
    assert not set(first) & set(rows_of(second)) and len(rows_of(second)) == 25


def test_expanded_group_loads_more_of_its_runs(logged_in, many_runs, django_assert_max_num_queries):
    html = logged_in.get(
        "/w/acme/vision/", {"group": "parameters/optimizer", "sort": "-parameters/lr", "per": "25"}
    ).content.decode()
    adam, sgd = html.split("<strong>sgd</strong>")
    assert "60 runs" in adam and len(rows_of(adam)) == 20 and "40 more in this group" in adam
    assert len(rows_of(sgd)) == 10 and "more in this group" not in sgd
    seen = rows_of(adam)
    url = follow(adam, 'class="load-group"')
    while url:
        # 10, plus on PostgreSQL inside the test's transaction the query budget's savepoint, SET LOCAL, reset, release
        with django_assert_max_num_queries(14):
            fragment = logged_in.get("/w/acme/vision/" + url, HTTP_HX_REQUEST="true").content.decode()
        assert "<html" not in fragment and "group-head" not in fragment
        seen += rows_of(fragment)
        url = follow(fragment, 'class="load-group"') if 'class="load-group"' in fragment else ""
    adam_runs = [r for i, r in enumerate(many_runs) if i < 60]
    expected = [r.human_id for r in sorted(adam_runs, key=lambda r: (-((many_runs.index(r) * 37) % 70), -r.pk))]
    assert seen == expected, "the group's runs once each, in the table's sort order"


def test_group_rows_fragment_rejects_a_bad_key(logged_in, many_runs):
    base = "/w/acme/vision/?group=parameters/optimizer&fragment=group"
    assert logged_in.get(base + "&gk=notjson").status_code == 400
    assert logged_in.get(base + '&gk=["adam","x"]').status_code == 400
    assert logged_in.get('/w/acme/vision/?fragment=group&gk=["adam"]').status_code == 400
    assert rows_of(logged_in.get(base + '&gk=["nope"]').content.decode()) == []


def test_stranger_sees_no_rows_of_a_page_or_group(world, many_runs):
    urls = [
        "/w/acme/vision/?page=2&first=1&fragment=rows",
        '/w/acme/vision/?group=parameters/optimizer&fragment=group&gk=["adam"]&goff=20&gn=60',
    ]
    rows = dict.fromkeys(["owner", "contributor", "viewer"], lambda r: len(rows_of(r.content.decode())) >= 20)
    for url in urls:
        role_matrix(
            world,
            get(url, HTTP_HX_REQUEST="true"),
            UI_PAGE,
            ui=True,
            check={**rows, "stranger": lambda r: not rows_of(r.content.decode())},
        )


# ---- lineage -------------------------------------------------------------------------------


def track(run, field, files: dict[str, bytes], location="file:///data/train"):
    """What the client's ``track_files`` records for a directory of ``files``."""
    entries = [(name, hashlib.sha256(content).hexdigest(), len(content)) for name, content in sorted(files.items())]
    overall = hashlib.sha256("".join(f"{r}\0{s}\0{n}\n" for r, s, n in entries).encode()).hexdigest()
    services.apply_batch(
        run.owner,
        run,
        stream="track",
        seq=0,
        raw_ops=[
            {
                "op": "assign",
                "path": field,
                "value": {
                    "hash": overall,
                    "size": sum(e[2] for e in entries),
                    "file_count": len(entries),
                    "location": location,
                },
            },
            {
                "op": "assign",
                "path": f"{field}/files",
                "value": [f"{r}:{s}:{n}" for r, s, n in entries],
                "type": "string_set",
            },
        ],
    )
    return overall


DATA = {"a.csv": b"x,y\n1,2\n", "b.csv": b"x,y\n3,4\n"}


@pytest.fixture
def lineage_world(project, owner, stranger):
    """Two runs tracking the same directory, one tracking other data, and a run of a project in a
    workspace nobody of acme can read that tracked the same data too."""
    from projects import services as project_services

    first, _ = services.create_run(owner, project, name="prep")
    second, _ = services.create_run(owner, project, name="train")
    other, _ = services.create_run(owner, project, name="other data")
    digest = track(first, "data/train", DATA)
    track(second, "dataset", DATA, location="file:///mnt/copy")
    track(other, "data/train", {"a.csv": b"changed"})
    hidden_ws = project_services.create_workspace(stranger, "secret", "Secret")
    hidden_project = project_services.create_project(stranger, hidden_ws, "vision", key="SEC")
    hidden, _ = services.create_run(stranger, hidden_project, name="hidden")
    track(hidden, "data/train", DATA)
    return {"first": first, "second": second, "other": other, "hidden": hidden, "digest": digest}


def lineage(client, run):
    return client.get(page(run, "?fragment=lineage"), HTTP_HX_REQUEST="true")


def test_runs_tracking_the_same_directory_see_each_other(ui_for, lineage_world, viewer, django_assert_max_num_queries):
    first, second, other = lineage_world["first"], lineage_world["second"], lineage_world["other"]
    client = ui_for(viewer)
    html = client.get(page(first)).content.decode()
    assert 'href="#lineage"' in html and "fragment=lineage" in html
    with django_assert_max_num_queries(12):
        fragment = lineage(client, first).content.decode()
    assert "<html" not in fragment and "data/train" in fragment and lineage_world["digest"][:12] in fragment
    assert f">{second.human_id}</a>" in fragment and "as dataset<" in fragment
    assert other.human_id not in fragment
    back = lineage(client, second).content.decode()
    assert f">{first.human_id}</a>" in back and "as data/train<" in back and "file:///mnt/copy" in back
    assert "no other run" in lineage(client, other).content.decode()


def test_lineage_never_shows_runs_of_projects_the_viewer_cannot_read(world, ui_for, lineage_world, stranger):
    hidden = lineage_world["hidden"]

    def shows_no_hidden_run(response):
        fragment = response.content.decode()
        return "data/train" in fragment and "SEC-" not in fragment and "hidden" not in fragment

    role_matrix(
        world,
        lambda client: lineage(client, lineage_world["first"]),
        UI_PAGE,
        ui=True,
        check=dict.fromkeys(["owner", "contributor", "viewer"], shows_no_hidden_run),
    )
    # the stranger reads their own project: acme's runs with the same data are not theirs to see
    fragment = (
        ui_for(stranger)
        .get(f"/w/secret/vision/runs/{hidden.human_id}/?fragment=lineage", HTTP_HX_REQUEST="true")
        .content.decode()
    )
    assert "data/train" in fragment and "VIS-" not in fragment and "no other run" in fragment


def test_stranger_gets_404_on_lineage(world, lineage_world):
    role_matrix(
        world,
        lambda client: lineage(client, lineage_world["first"]),
        UI_PAGE,
        ui=True,
        check={"stranger": lambda response: b"data/train" not in response.content},
    )


def test_lineage_of_uploaded_files_by_blob_in_a_bounded_number_of_queries(
    ui_for, project, owner, viewer, django_assert_max_num_queries
):
    model, _ = services.create_run(owner, project, name="trainer")
    user, _ = services.create_run(owner, project, name="evaluator")
    partial, _ = services.create_run(owner, project, name="partial copy")
    ops = {model: [], user: [], partial: []}
    weights = upload(owner, model, "model.pt", b"weights-v1", "application/octet-stream")
    upload(owner, user, "model.pt", b"weights-v1", "application/octet-stream")
    ops[model].append({"op": "upload", "path": "model/weights", "sha256": weights.sha256, "name": "model.pt"})
    ops[user].append({"op": "upload", "path": "inputs/model", "sha256": weights.sha256, "name": "model.pt"})
    # a file set of 40 files; "partial copy" holds 3 of them
    samples, subset = [], []
    for index in range(40):
        content = f"image {index}".encode()
        blob = upload(owner, model, f"{index}.png", content, "image/png")
        samples.append({"relpath": f"{index}.png", "sha256": blob.sha256})
        if index < 3:
            upload(owner, partial, f"{index}.png", content, "image/png")
            subset.append({"relpath": f"{index}.png", "sha256": blob.sha256})
    ops[model].append({"op": "upload_set", "path": "samples", "files": samples})
    ops[partial].append({"op": "upload_set", "path": "subset", "files": subset})
    for run, run_ops in ops.items():
        services.apply_batch(run.owner, run, stream="files", seq=0, raw_ops=run_ops)
    client = ui_for(viewer)
    with django_assert_max_num_queries(12):
        fragment = lineage(client, model).content.decode()
    weights_row, samples_row = fragment.split("model/weights")[1].split('<th scope="row">samples')
    assert (
        f">{user.human_id}</a>" in weights_row
        and "as inputs/model" in weights_row
        and weights.sha256[:12] in weights_row
    )
    assert (
        f">{partial.human_id}</a>" in samples_row
        and "3 of 40 files" in samples_row
        and user.human_id not in samples_row
    )
    assert f">{model.human_id}</a>" in lineage(client, user).content.decode()
