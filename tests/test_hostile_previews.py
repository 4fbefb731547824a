"""Hostile files and previews (issue 10): bounded previews (defect 4), framing of the sandboxed ones (defect 5)."""

import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from runs import processing, tasks
from runs.models import BlobInfo, BlobPreview, BlobState
from tracker.celery import app

from .conftest import run_url
from .test_tasks import NOTEBOOK, attach, png_bytes
from .test_worker import send, wait_for, worker, worker_env  # noqa: F401 (fixtures of the real worker)


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }


def page(run, suffix=""):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/{suffix}"


def body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def framed_files(owner_api, run):
    """An HTML report and a notebook (rendered by processing) attached to ``run``."""
    attach(owner_api, run, "report.html", b"<html><body><p>framed report</p></body></html>", "files/report")
    processing.process_blob(attach(owner_api, run, "analysis.ipynb", NOTEBOOK, "files/notebook"))
    attach(owner_api, run, "sample.png", png_bytes((20, 20)), "files/image")
    return run


def test_html_report_and_notebook_previews_may_be_framed_by_runstore_only(client, owner, owner_api, framed_files):
    client.force_login(owner)
    run = framed_files
    report = client.get(page(run, "raw"), {"path": "files/report"})
    notebook = owner_api.get(run_url(run, "files/preview"), {"path": "files/notebook", "kind": "html"})
    assert b"framed report" in body(report) and b"Training notes" in body(notebook)
    for response in (report, notebook):
        assert response.status_code == 200 and response["X-Frame-Options"] == "SAMEORIGIN"
        directives = [d.strip() for d in response["Content-Security-Policy"].split(";")]
        assert directives[0] == "sandbox" and "frame-ancestors 'self'" in directives


def test_every_other_page_still_refuses_to_be_framed(client, owner, owner_api, framed_files):
    client.force_login(owner)
    run = framed_files
    pages = [
        page(run),
        page(run, "preview?path=files/report"),
        page(run, "preview?path=files/notebook"),
        page(run, "gallery?path=files/image"),
        f"/w/{run.project.workspace.slug}/{run.project.slug}/",
        f"/w/{run.project.workspace.slug}/{run.project.slug}/compare?runs={run.human_id}",
        "/",
    ]
    for url in pages:
        response = client.get(url)
        body(response)
        assert response["X-Frame-Options"] == "DENY", url
    client.logout()
    assert client.get("/accounts/login/")["X-Frame-Options"] == "DENY"
    download = owner_api.get(run_url(run, "files/download"), {"path": "files/report"})
    body(download)
    assert download["X-Frame-Options"] == "DENY"


# --- defect 4: previews cannot exhaust a worker -------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def png_bomb():
    """A valid 13000x13000 greyscale PNG of some 160 KB (169 MB once decoded), built a row at a time."""
    side = 13_000
    squeeze = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + black pixels
    idat = b"".join([squeeze.compress(row) for _ in range(side)] + [squeeze.flush()])
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def _peak_rss_growth(action) -> int:
    """Bytes the process's peak resident memory rose above its current size while ``action`` ran."""
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    before = _kib("VmRSS")
    action()
    return (_kib("VmHWM") - before) * 1024


def _as_a_worker_runs(action):
    """Run ``action`` under a Celery worker's warning filters (pytest turns warnings into errors; a worker does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return action()


def test_png_decompression_bomb_is_a_recorded_preview_failure_in_bounded_memory(
    client, owner, owner_api, run, png_bomb
):
    assert len(png_bomb) < 200_000
    sha = attach(owner_api, run, "bomb.png", png_bomb, "images/bomb")
    states = []
    growth = _peak_rss_growth(lambda: states.append(_as_a_worker_runs(lambda: processing.process_blob(sha))))
    assert states == [BlobState.READY]
    assert growth < 64 * 1024 * 1024, f"the preview of a 13000x13000 PNG raised peak memory by {growth / 2**20:.0f} MiB"
    info = BlobInfo.objects.get(blob_id=sha)
    assert "preview limit of 50,000,000 pixels" in info.preview_error and info.error.startswith("preview failed: ")
    assert info.metadata["verified"] and not BlobPreview.objects.filter(blob_id=sha).exists()

    summary = owner_api.get(run_url(run, "files/info"), {"path": "images/bomb"}).json()["processing"]
    assert summary["state"] == "ready" and summary["preview_error"] == info.preview_error and summary["previews"] == []
    thumbnail = owner_api.get(run_url(run, "files/preview"), {"path": "images/bomb", "kind": "thumbnail"})
    assert thumbnail.status_code == 404 and thumbnail.json()["error"]["code"] == "preview_failed"
    assert thumbnail.json()["error"]["field"] == "kind" and "pixels" in thumbnail.json()["error"]["message"]
    download = owner_api.get(run_url(run, "files/download"), {"path": "images/bomb"})
    assert download.status_code == 200 and body(download) == png_bomb

    client.force_login(owner)
    html = client.get(page(run, "preview"), {"path": "images/bomb"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Preview failed: image over the preview limit of 50,000,000 pixels" in html
    assert "<img" not in html and f"/api/v1/runs/{run.uuid}/files/download?path=images%2Fbomb" in html


def test_image_between_the_pixel_limit_and_twice_it_is_refused_too(owner_api, run, settings):
    """Pillow only warns there; the preview must not go on decoding after the warning."""
    settings.RUNSTORE_PREVIEW_MAX_PIXELS = 30 * 30
    sha = attach(owner_api, run, "big.png", png_bytes((40, 40)), "images/big")  # 1,600 pixels: 1.8x the limit
    _as_a_worker_runs(lambda: processing.process_blob(sha))
    assert "preview limit of 900 pixels" in BlobInfo.objects.get(blob_id=sha).preview_error
    assert not BlobPreview.objects.filter(blob_id=sha).exists()
    small = attach(owner_api, run, "small.png", png_bytes((30, 30)), "images/small")
    processing.process_blob(small)
    assert BlobPreview.objects.filter(blob_id=small, kind="thumbnail").exists()
    assert BlobInfo.objects.get(blob_id=small).preview_error == ""


def test_large_jpeg_thumbnail_decodes_at_reduced_scale(owner_api, run):
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(out, format="JPEG", quality=70)
    sha = attach(owner_api, run, "photo.jpg", out.getvalue(), "images/photo")
    growth = _peak_rss_growth(lambda: processing.process_blob(sha))
    assert growth < 4000 * 3000 * 3 / 2, f"{growth / 2**20:.0f} MiB: the JPEG was decoded at full size"
    assert BlobInfo.objects.get(blob_id=sha).metadata["width"] == 4000
    assert BlobPreview.objects.filter(blob_id=sha, kind="thumbnail").exists()


def _notebook(cells: int, output: str = "") -> bytes:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "metadata": {},
                    "execution_count": i,
                    "source": [f"print({i})"],
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": [output or f"{i}\n"]}],
                }
                for i in range(cells)
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ).encode()


def test_notebook_of_20k_cells_fails_its_preview_before_converting_it(client, owner, owner_api, run):
    content = _notebook(20_000)
    sha = attach(owner_api, run, "huge.ipynb", content, "notebooks/huge")
    assert _as_a_worker_runs(lambda: processing.process_blob(sha)) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.preview_error == "notebook of 20,000 cells is over the preview limit of 2,000 cells"
    assert info.metadata["cells"] == 20_000 and not BlobPreview.objects.filter(blob_id=sha).exists()
    download = owner_api.get(run_url(run, "files/download"), {"path": "notebooks/huge"})
    assert download.status_code == 200 and body(download) == content
    client.force_login(owner)
    html = client.get(page(run, "preview"), {"path": "notebooks/huge"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Preview failed: notebook of 20,000 cells" in html and "<iframe" not in html


def test_notebook_outputs_over_the_bound_fail_the_preview(owner_api, run, settings):
    settings.RUNSTORE_PREVIEW_MAX_OUTPUT_BYTES = 10_000
    sha = attach(owner_api, run, "chatty.ipynb", _notebook(3, output="x" * 5_000), "notebooks/chatty")
    processing.process_blob(sha)
    assert re.fullmatch(
        r"notebook outputs of 15,\d{3} bytes are over the preview limit of 10,000 bytes",
        BlobInfo.objects.get(blob_id=sha).preview_error,
    )


def test_media_previews_run_under_a_soft_time_limit_well_under_the_hard_one():
    limit = django_settings.RUNSTORE_MEDIA_SOFT_TIME_LIMIT
    assert tasks.preview_blob.soft_time_limit == limit == 60
    assert limit * 5 <= app.conf.task_time_limit == django_settings.CELERY_TASK_TIME_LIMIT
    assert app.amqp.router.route({}, "runs.tasks.preview_blob")["queue"].name == "media"


@pytest.mark.django_db(transaction=True)
def test_preview_past_the_soft_time_limit_is_recorded_by_a_real_worker(owner, run, worker, worker_env):  # noqa: F811
    import hashlib

    from django.core.files.uploadedfile import SimpleUploadedFile

    from runs import services

    worker_env["RUNSTORE_MEDIA_SOFT_TIME_LIMIT"] = "1"
    content = _notebook(300)  # some 4 s of nbconvert in a fresh worker
    upload = SimpleUploadedFile("slow.ipynb", content)
    upload.sha256 = hashlib.sha256(content).hexdigest()
    blob = services.store_upload(owner, run, upload)
    worker()
    send(tasks.process_blob, blob.sha256)
    wait_for(
        lambda: BlobInfo.objects.filter(blob=blob).exclude(preview_error="").exists(),
        timeout=60,
        what="the preview to fail",
    )
    info = BlobInfo.objects.get(blob=blob)
    assert info.state == BlobState.READY and info.preview_error == "took longer than the 1 s time limit"
    assert not BlobPreview.objects.filter(blob=blob).exists()
