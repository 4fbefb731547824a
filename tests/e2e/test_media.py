"""Media of file series in a real browser: the run page's grid at a step (slider), the lightbox and
its keyboard, audio and a sandboxed HTML report, and the same series side by side in compare."""

import hashlib
import io
import re
import wave

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from projects import services as project_services
from runs import processing, services

from .test_browser import login
from .test_layout import WIDEST

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
COLORS = {0: (220, 40, 40), 5: (240, 170, 20), 10: (40, 160, 60), 15: (30, 150, 200), 20: (60, 60, 220)}
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"


def png(color, size=(96, 64)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle([8, 8, 40, 40], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x10\x00\xf0" * 4000)  # one second
    return out.getvalue()


def log_files(owner, run, path, files, seq):
    """``files`` [(step, name, content, mime)] appended to the file series ``path`` (what the client's
    ``run[path].append(File(...), step=...)`` sends); images get their thumbnails as processing makes them."""
    values, steps = [], []
    for step, name, content, mime in files:
        upload = SimpleUploadedFile(name, content, content_type=mime)
        upload.sha256 = hashlib.sha256(content).hexdigest()
        blob = services.store_upload(owner, run, upload)
        values.append({"sha256": blob.sha256, "name": name, "mime_type": mime})
        steps.append(step)
    services.apply_batch(
        owner,
        run,
        stream="media",
        seq=seq,
        raw_ops=[{"op": "append", "path": path, "kind": "file", "values": values, "steps": steps}],
    )
    for value in values:
        processing.process_blob(value["sha256"])


@pytest.fixture
def media_runs(django_user_model, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    first, _ = services.create_run(owner, project, name="unet-small")
    second, _ = services.create_run(owner, project, name="unet-large")
    log_files(owner, first, "images/pred", [(s, f"p{s}.png", png(COLORS[s]), "image/png") for s in (0, 10, 20)], 0)
    log_files(
        owner, first, "images/mask", [(s, f"m{s}.png", png(COLORS[s], (64, 64)), "image/png") for s in (5, 15)], 1
    )
    log_files(
        owner, first, "audio/clip", [(0, "c0.wav", wav(), "audio/x-wav"), (10, "c10.wav", wav(), "audio/x-wav")], 2
    )
    report = b"<html><body><h1>Epoch report</h1><script>parent.document.title = 'owned'</script></body></html>"
    log_files(owner, first, "reports/epoch", [(0, "r0.html", report, "text/html")], 3)
    log_files(owner, second, "images/pred", [(s, f"q{s}.png", png(COLORS[s]), "image/png") for s in (5, 15)], 0)
    return first, second


def tile(page, key):
    return page.locator(f".media-tile[data-key='{key}']")


def test_run_media_grid_slider_lightbox_keyboard_audio_and_html(page, live_server, media_runs, screenshot):
    first, _ = media_runs
    refused = []  # the page's CSP (no inline script or style) holds for the grid and the lightbox
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/{first.human_id}/")
    title = page.title()
    page.locator("#images").scroll_into_view_if_needed()
    expect(page.locator("#images .media-tile")).to_have_count(4)
    pred = tile(page, "images/pred").locator("img")
    expect(pred).to_have_attribute("src", re.compile(r"thumb\?path=images%2Fpred&step=20$"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.media-open img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    slider = page.locator("#images .media-slider")
    expect(slider).to_have_attribute("data-steps", "0,5,10,15,20")

    # the slider: two steps back from the last is step 10; each series shows its nearest lower step
    slider.focus()
    with page.expect_response(lambda r: "/gallery?" in r.url and "step=15" in r.url):
        page.keyboard.press("ArrowLeft")
    with page.expect_response(lambda r: "/gallery?" in r.url and "step=10" in r.url):
        page.keyboard.press("ArrowLeft")
    expect(page.locator("#images .media-step-out")).to_have_text("10")
    expect(pred).to_have_attribute("src", re.compile(r"step=10$"))
    expect(tile(page, "images/mask")).to_contain_text("step 5 (nearest before 10)")
    expect(tile(page, "audio/clip").locator("audio")).to_have_attribute("src", re.compile(r"audio%2Fclip&step=10$"))

    # audio plays from the raw file (type and byte ranges): the browser reads its duration
    page.wait_for_function(
        "() => { const a = document.querySelector(\".media-tile[data-key='audio/clip'] audio\");"
        " return a && a.readyState >= 1 && Math.abs(a.duration - 1) < 0.01; }"
    )
    # the HTML report renders in its sandbox and its script never reaches the page
    frame = page.frame_locator(".media-tile[data-key='reports/epoch'] iframe")
    expect(frame.get_by_role("heading", name="Epoch report")).to_be_visible()
    expect(page.locator(".media-tile[data-key='reports/epoch'] iframe")).to_have_attribute("sandbox", "")
    assert page.title() == title
    page.locator("#images").screenshot(path=str(shot_path("media-run-grid-light")))

    # the lightbox: opens on a click, full-size image, keyboard through images and steps
    tile(page, "images/pred").locator(".media-open").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^images/pred · step 10 \(3 of 4\)$"))
    big = dialog.locator("img")
    expect(big).to_have_attribute("src", re.compile(r"/raw\?path=images%2Fpred&step=10$"))
    page.wait_for_function(
        "() => { const i = document.querySelector('dialog img'); return i && i.complete && i.naturalWidth === 96; }"
    )
    assert big.bounding_box()["height"] > 300  # enlarged: the 96×64 image fills the lightbox
    expect(big).to_have_class(re.compile("media-pixels"))
    expect(page.locator("dialog .media-close")).to_be_focused()
    screenshot(page, "media-lightbox-light", full_page=False)
    page.keyboard.press("ArrowLeft")  # the previous image of this step
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^images/mask · step 5 \(2 of 4\)"))
    with page.expect_response(lambda r: "step=15" in r.url):
        page.keyboard.press("ArrowDown")  # the next step, same series
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^images/mask · step 15 "))
    expect(page.locator("#images .media-step-out")).to_have_text("15")
    page.keyboard.press("ArrowLeft")
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^audio/clip · step 10 "))
    expect(dialog.locator("audio")).to_have_count(1)
    with page.expect_response(lambda r: "step=10" in r.url):
        page.keyboard.press("ArrowLeft")  # before the first cell of step 15: the last one of step 10
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^reports/epoch · step 0 \(4 of 4\)"))
    expect(dialog.locator("iframe")).to_have_attribute("sandbox", "")
    with page.expect_response(lambda r: "step=15" in r.url):
        page.keyboard.press("ArrowRight")  # after the last cell: the first one of the next step
    expect(dialog.locator("h2")).to_have_text(re.compile(r"^audio/clip · step 10 \(1 of 4\)"))
    # focus stays in the dialog
    for _ in range(8):
        page.keyboard.press("Tab")
        assert page.evaluate("() => !!document.activeElement.closest('dialog')")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # focus goes back to the grid in the dialog's close event, a task queued after it is hidden
    page.wait_for_function("() => !!document.activeElement.closest('.media')", timeout=5_000)
    assert page.title() == title
    assert refused == []


def reveal_media(page, tiles):
    """Scroll the compare page's media section into view until its tiles are there: the plots above it may
    grow while it is first scrolled to (charts loading on a busy machine) and push it out of view again."""
    section = page.locator("#media")
    for _ in range(5):
        section.scroll_into_view_if_needed()
        try:
            expect(section.locator(".media-tile")).to_have_count(tiles, timeout=6_000)
            return
        except AssertionError:
            continue
    expect(section.locator(".media-tile")).to_have_count(tiles, timeout=10_000)


def shot_path(name):
    from .conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_media_grid_and_lightbox_fit_a_phone(browser, live_server, media_runs, screenshot, scheme):
    first, second = media_runs
    context = browser.new_context(viewport=PHONE, color_scheme=scheme)
    page = context.new_page()
    try:
        login(page, live_server)
        page.goto(f"{live_server.url}/w/acme/vision/runs/{first.human_id}/#images")
        expect(page.locator("#images .media-tile")).to_have_count(4)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.media-open img')].every((i) => i.complete && i.naturalWidth > 0)"
        )
        assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(WIDEST)
        page.locator("#images").screenshot(path=str(shot_path(f"media-run-grid-390-{scheme}")))
        tile(page, "images/pred").locator(".media-open").click()
        expect(page.get_by_role("dialog")).to_be_visible()
        page.wait_for_function(
            "() => { const i = document.querySelector('dialog img'); return i && i.complete && i.naturalWidth > 0; }"
        )
        assert page.locator("dialog img").bounding_box()["width"] > 300  # enlarged to the phone's width
        screenshot(page, f"media-lightbox-390-{scheme}", full_page=False)
        page.keyboard.press("Escape")
        page.goto(f"{live_server.url}/w/acme/vision/compare?runs={first.human_id},{second.human_id}")
        # the section loads when scrolled to, after the page's charts have asked for their data
        reveal_media(page, 2)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(WIDEST)
        page.locator("#media").screenshot(path=str(shot_path(f"media-compare-390-{scheme}")))
    finally:
        context.close()


def test_compare_shows_a_series_of_each_run_side_by_side_at_a_step(page, live_server, media_runs, screenshot):
    first, second = media_runs
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/compare?runs={first.human_id},{second.human_id}")
    reveal_media(page, 2)  # loaded when scrolled to
    columns = page.locator("#media .media-tile")
    assert columns.evaluate_all("(tiles) => tiles.map((t) => t.dataset.key)") == [first.human_id, second.human_id]
    # the first series by name, at the last step any run logged it
    expect(page.locator("#media select[name=path]")).to_have_value("audio/clip")
    expect(tile(page, second.human_id)).to_contain_text("No audio/clip in this run.")
    with page.expect_response(lambda r: "compare/media" in r.url and "images%2Fpred" in r.url):
        page.locator("#media select[name=path]").select_option("images/pred")
    expect(page.locator("#media .media-slider")).to_have_attribute("data-steps", "0,5,10,15,20")
    first_img = tile(page, first.human_id).locator("img")
    second_img = tile(page, second.human_id).locator("img")
    expect(first_img).to_have_attribute("src", re.compile(r"thumb\?path=images%2Fpred&step=20$"))
    expect(second_img).to_have_attribute("src", re.compile(r"thumb\?path=images%2Fpred&step=15$"))
    # a step in between: each run shows its nearest lower step, one column per run
    page.locator("#media .media-slider").focus()
    with page.expect_response(lambda r: "step=15" in r.url):
        page.keyboard.press("ArrowLeft")
    with page.expect_response(lambda r: "step=10" in r.url):
        page.keyboard.press("ArrowLeft")
    expect(first_img).to_have_attribute("src", re.compile(r"step=10$"))
    expect(second_img).to_have_attribute("src", re.compile(r"step=5$"))
    expect(tile(page, second.human_id)).to_contain_text("step 5 (nearest before 10)")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#media .media-open img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    # side by side: two columns on one row
    first_box, second_box = tile(page, first.human_id).bounding_box(), tile(page, second.human_id).bounding_box()
    assert abs(first_box["y"] - second_box["y"]) < 1 and second_box["x"] > first_box["x"] + first_box["width"]
    page.locator("#media").screenshot(path=str(shot_path("media-compare-light")))
    # the lightbox walks across the runs: → is the next run's image at this step
    tile(page, first.human_id).locator(".media-open").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("h2")).to_have_text(re.compile(rf"^{first.human_id} · images/pred · step 10 "))
    page.keyboard.press("ArrowRight")
    expect(dialog.locator("h2")).to_have_text(re.compile(rf"^{second.human_id} · images/pred · step 5 "))
    screenshot(page, "media-compare-lightbox-light", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
