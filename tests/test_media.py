"""Media of file series (issue 14, missing 2): a run's image/audio/HTML series as a grid at one step,
reduced thumbnails, audio with its type and byte ranges, sandboxed HTML, and the same series side by
side across compared runs. Data goes in through the public API (uploads + batch)."""

import io
import mimetypes
import re
import wave

import pytest
from PIL import Image

from runs import processing, services

from .conftest import batch
from .roles import role_matrix
from .test_files import upload

UI_PAGE = {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 302}


@pytest.fixture(autouse=True)
def private_blob_folder(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }


def png(size=(640, 480), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def wav(frames=4000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x10" * frames)
    return out.getvalue()


def log_files(client, run, path, files, seq):
    """Append ``files`` [(step, name, content)] to the file series ``path`` through the API."""
    values, steps = [], []
    for step, name, content in files:
        response = upload(client, run, name, content)
        assert response.status_code == 201, response.content
        # the client sends the type its File guessed from the name
        values.append({"sha256": response.json()["sha256"], "name": name, "mime_type": mimetypes.guess_type(name)[0]})
        steps.append(step)
    response = batch(
        client, run, [{"op": "append", "path": path, "kind": "file", "values": values, "steps": steps}], seq=seq
    )
    assert response.status_code == 200, response.content
    return [v["sha256"] for v in values]


def page(run, suffix=""):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/{suffix}"


def read(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def media_run(owner_api, run):
    log_files(owner_api, run, "images/a", [(0, "a0.png", png()), (10, "a10.png", png()), (20, "a20.png", png())], 1)
    log_files(owner_api, run, "images/b", [(5, "b5.png", png((32, 32))), (15, "b15.png", png((32, 32)))], 2)
    return run


def test_grid_shows_every_series_at_the_chosen_step_or_the_nearest_lower_one(client, owner, media_run):
    client.force_login(owner)
    html = client.get(page(media_run, "gallery"), {"step": 12}).content.decode()
    assert 'data-steps="0,5,10,15,20"' in html and 'type="range"' in html
    assert "thumb?path=images%2Fa&amp;step=10" in html and "thumb?path=images%2Fb&amp;step=5" in html
    assert html.count('class="media-open"') == 2 and "(nearest before 12)" in html
    early = client.get(page(media_run, "gallery"), {"step": 3, "fragment": "tiles"}).content.decode()
    assert "thumb?path=images%2Fa&amp;step=0" in early and "Nothing logged at or before step 3" in early
    assert 'type="range"' not in early  # the slider's request swaps only the cells
    last = client.get(page(media_run, "gallery")).content.decode()  # no step: the last one
    assert "thumb?path=images%2Fa&amp;step=20" in last and "thumb?path=images%2Fb&amp;step=15" in last
    one = client.get(page(media_run, "gallery"), {"path": "images/b"}).content.decode()
    assert 'data-steps="5,15"' in one and "images%2Fa" not in one


def test_grid_step_must_be_an_integer(client, owner, media_run):
    client.force_login(owner)
    response = client.get(page(media_run, "gallery"), {"step": "ten"})
    assert response.status_code == 400 and b"step" in response.content


def test_grid_of_many_series_takes_a_bounded_number_of_queries(
    client, owner, owner_api, run, django_assert_max_num_queries
):
    image = png((8, 8))
    for index in range(12):
        log_files(owner_api, run, f"images/s{index:02d}", [(0, "x.png", image), (5, "y.png", image)], index + 1)
    client.force_login(owner)
    with django_assert_max_num_queries(12):
        html = client.get(page(run, "gallery"), {"step": 4}).content.decode()
    assert html.count('class="media-open"') == 12


def test_thumbnail_is_the_reduced_preview_made_by_blob_processing(client, owner, owner_api, run, settings):
    (sha,) = log_files(owner_api, run, "images/big", [(0, "big.png", png((1200, 900)))], 1)
    client.force_login(owner)
    before = client.get(page(run, "thumb"), {"path": "images/big", "step": 0})
    assert before.status_code == 200 and Image.open(io.BytesIO(read(before))).size == (1200, 900)  # not made yet
    processing.process_blob(sha)
    response = client.get(page(run, "thumb"), {"path": "images/big", "step": 0})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    thumb = Image.open(io.BytesIO(read(response)))
    assert max(thumb.size) == settings.RUNSTORE_THUMBNAIL_SIZE and thumb.size[0] > thumb.size[1]
    assert response["Content-Security-Policy"].startswith("sandbox")


def test_an_image_processing_refused_has_no_thumbnail(client, owner, owner_api, run, settings):
    settings.RUNSTORE_PREVIEW_MAX_PIXELS = 100 * 100
    (sha,) = log_files(owner_api, run, "images/huge", [(0, "huge.png", png((400, 400)))], 1)
    processing.process_blob(sha)
    client.force_login(owner)
    assert client.get(page(run, "thumb"), {"path": "images/huge", "step": 0}).status_code == 404
    raw = client.get(page(run, "raw"), {"path": "images/huge", "step": 0})
    assert raw.status_code == 200 and read(raw)  # the lightbox still shows the file itself


def test_audio_series_plays_with_its_type_and_byte_ranges(client, owner, owner_api, run):
    sound = wav()
    log_files(owner_api, run, "audio/sample", [(0, "s0.wav", sound), (1, "s1.wav", sound)], 1)
    client.force_login(owner)
    html = client.get(page(run, "gallery")).content.decode()
    assert re.search(r'<audio controls preload="metadata" src="[^"]*raw\?path=audio%2Fsample&amp;step=1"', html)
    response = client.get(page(run, "raw"), {"path": "audio/sample", "step": 1}, HTTP_RANGE="bytes=0-99")
    assert response.status_code == 206 and response["Content-Type"] in ("audio/wav", "audio/x-wav")
    assert response["Accept-Ranges"] == "bytes" and response["Content-Range"] == f"bytes 0-99/{len(sound)}"
    assert read(response) == sound[:100]
    tail = client.get(page(run, "raw"), {"path": "audio/sample", "step": 1}, HTTP_RANGE=f"bytes={len(sound) - 10}-")
    assert tail.status_code == 206 and read(tail) == sound[-10:]


def test_html_series_is_shown_in_a_sandboxed_frame_that_only_runstore_may_frame(client, owner, owner_api, run):
    report = b"<html><body><script>parent.document.title='owned'</script><p>epoch report</p></body></html>"
    log_files(owner_api, run, "reports/epoch", [(0, "r0.html", report)], 1)
    client.force_login(owner)
    grid = client.get(page(run, "gallery"))
    html = grid.content.decode()
    frame = re.search(r"<iframe [^>]*>", html).group(0)
    assert 'sandbox=""' in frame and "raw?path=reports%2Fepoch&amp;step=0" in frame
    assert grid["X-Frame-Options"] == "DENY"  # the grid itself is never framed
    raw = client.get(page(run, "raw"), {"path": "reports/epoch", "step": 0})
    directives = [d.strip() for d in raw["Content-Security-Policy"].split(";")]
    assert directives[0] == "sandbox" and "frame-ancestors 'self'" in directives
    assert raw["X-Frame-Options"] == "SAMEORIGIN" and raw["X-Content-Type-Options"] == "nosniff"
    assert read(raw) == report


def test_compare_shows_the_series_of_every_run_side_by_side_at_one_step(client, owner, owner_api, project, media_run):
    second, _ = services.create_run(owner, project, name="second")
    third, _ = services.create_run(owner, project, name="third")
    log_files(owner_api, second, "images/a", [(3, "c3.png", png()), (30, "c30.png", png())], 1)
    log_files(owner_api, third, "images/other", [(0, "o.png", png())], 1)
    client.force_login(owner)
    ids = f"{media_run.human_id},{second.human_id},{third.human_id}"
    url = "/w/acme/vision/compare/media"
    html = client.get(url, {"runs": ids, "path": "images/a", "step": 12}).content.decode()
    assert 'data-steps="0,3,10,20,30"' in html
    assert '<option value="images/b"' in html and '<option value="images/other"' in html
    cells = re.findall(r'<figure class="media-tile[^"]*" data-key="([^"]+)"', html)
    assert cells == [media_run.human_id, second.human_id, third.human_id]  # one column per run, in order
    assert f"runs/{media_run.human_id}/thumb?path=images%2Fa&amp;step=10" in html
    assert f"runs/{second.human_id}/thumb?path=images%2Fa&amp;step=3" in html
    assert "No images/a in this run." in html
    default = client.get(url, {"runs": ids}).content.decode()  # first path, last step
    assert f"runs/{second.human_id}/thumb?path=images%2Fa&amp;step=30" in default
    assert client.get(url, {"runs": ids, "path": "nope"}).status_code == 404
    compare_page = client.get("/w/acme/vision/compare", {"runs": ids}).content.decode()
    assert "compare/media?runs=" in compare_page and 'id="media"' in compare_page


def test_run_page_loads_the_media_grid(client, owner, media_run):
    client.force_login(owner)
    html = client.get(page(media_run)).content.decode()
    assert 'href="#images">Media<' in html and "runstore/media.js" in html
    assert f'hx-get="/w/acme/vision/runs/{media_run.human_id}/gallery"' in html


@pytest.mark.parametrize(
    "suffix",
    ["gallery?step=10", "thumb?path=images/a&step=10", "raw?path=images/a&step=10"],
)
def test_only_those_who_see_the_project_get_its_media(world, media_run, suffix):
    role_matrix(world, lambda client: client.get(page(media_run, suffix)), UI_PAGE, ui=True)


def test_only_those_who_see_the_project_compare_its_media(world, media_run):
    url = f"/w/acme/vision/compare/media?runs={media_run.human_id}"
    role_matrix(world, lambda client: client.get(url), UI_PAGE, ui=True)


def test_an_audio_file_field_previews_as_a_player(client, owner, owner_api, run):
    sound = wav()
    sha = upload(owner_api, run, "speech.wav", sound).json()["sha256"]
    op = {"op": "upload", "path": "eval/speech", "sha256": sha, "name": "speech.wav", "mime_type": "audio/x-wav"}
    assert batch(owner_api, run, [op], seq=1).status_code == 200
    client.force_login(owner)
    html = client.get(page(run, "preview"), {"path": "eval/speech"}).content.decode()
    assert re.search(r'<audio src="[^"]*raw\?path=eval%2Fspeech" controls', html)
    raw = client.get(page(run, "raw"), {"path": "eval/speech"}, HTTP_RANGE="bytes=44-")
    assert raw.status_code == 206 and raw["Content-Type"] == "audio/x-wav" and read(raw) == sound[44:]


def test_an_svg_drawing_is_its_own_thumbnail(client, owner, owner_api, run):
    drawing = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    (sha,) = log_files(owner_api, run, "plots/curve", [(0, "curve.svg", drawing)], 1)
    processing.process_blob(sha)
    client.force_login(owner)
    response = client.get(page(run, "thumb"), {"path": "plots/curve", "step": 0})
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response["Content-Security-Policy"].startswith("sandbox") and read(response) == drawing
