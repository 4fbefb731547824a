"""Compare in a browser: two runs' source and packages side by side, and a file set's ZIP download."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from projects import services as project_services
from runs import services

from .conftest import SCREENSHOTS
from .test_browser import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
TRAIN_A = "import torch\n\nLR = 1e-3\nEPOCHS = 10\n\n\ndef main():\n    model = build()\n    train(model, LR)\n"
TRAIN_B = (
    "import torch\n\nLR = 3e-4\nEPOCHS = 10\n\n\ndef main():\n    model = build()\n    train(model, LR)\n"
    "    evaluate(model)  # a very long comment that must wrap inside its column on a phone screen\n"
)


def _store(user, run, name, content: bytes):
    uploaded = SimpleUploadedFile(name, content)
    uploaded.sha256 = hashlib.sha256(content).hexdigest()
    return services.store_upload(user, run, uploaded).sha256


def _log(owner, run, packages, diff, train):
    ops = [
        {"op": "upload", "path": "environment/packages", "sha256": _store(owner, run, "r.txt", packages.encode())},
        {"op": "upload", "path": "source_code/diff", "sha256": _store(owner, run, "d.patch", diff.encode())},
        {
            "op": "upload_set",
            "path": "source_code/files",
            "files": [{"relpath": "train.py", "sha256": _store(owner, run, "train.py", train.encode())}],
        },
        {
            "op": "upload_set",
            "path": "model/final",
            "files": [{"relpath": "weights.bin", "sha256": _store(owner, run, "w.bin", b"w" * 1000)}],
        },
    ]
    services.apply_batch(owner, run, stream="s", seq=0, raw_ops=ops)


@pytest.fixture
def diff_world(django_user_model, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    owner = django_user_model.objects.create_user("owner", password="pw-owner")
    workspace = project_services.create_workspace(owner, "acme", "Acme")
    project = project_services.create_project(owner, workspace, "vision", key="VIS")
    a, _ = services.create_run(owner, project, name="baseline")
    b, _ = services.create_run(owner, project, name="lower lr")
    _log(owner, a, "numpy==1.26.4\ntorch==2.2.0\nPillow==10.0.0\n", "-x = 1\n+x = 2\n", TRAIN_A)
    _log(owner, b, "numpy==2.1.0\ntorch==2.2.0\nscipy==1.14.1\n", "-x = 1\n+x = 3\n", TRAIN_B)
    return a, b


def open_diffs(page, live_server):
    page.goto(f"{live_server.url}/w/acme/vision/compare?runs=VIS-1,VIS-2")
    page.locator("#source-diff").scroll_into_view_if_needed()
    expect(page.locator("table.package-diff")).to_be_visible(timeout=10_000)


def test_side_by_side_diff_of_two_runs_source_and_packages(page, live_server, diff_world):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    open_diffs(page, live_server)
    packages = page.locator("table.package-diff tbody tr")
    expect(packages).to_have_count(3)
    expect(page.locator("table.package-diff tr.pkg-changed")).to_contain_text("numpy")
    expect(page.locator("table.package-diff tr.pkg-added")).to_contain_text("scipy")
    expect(page.locator("table.package-diff tr.pkg-removed")).to_contain_text("Pillow")
    train = page.locator('details[data-label="source_code/files/train.py"] table.side-by-side')
    expect(train).to_be_visible()
    changed = train.locator("tr.replace").first
    expect(changed.locator("td.l")).to_have_text("LR = 1e-3")
    expect(changed.locator("td.r")).to_have_text("LR = 3e-4")
    # the two columns sit side by side: the right text starts right of the left text
    left, right = changed.locator("td.l").bounding_box(), changed.locator("td.r").bounding_box()
    assert right["x"] >= left["x"] + left["width"] - 1 and abs(right["y"] - left["y"]) < 2
    expect(train.locator("tr.insert td.r")).to_contain_text("evaluate(model)")
    expect(page.locator('details[data-label="source_code/diff"] tr.replace td.r')).to_have_text("+x = 3")
    assert errors == []


@pytest.mark.parametrize(("scheme", "viewport"), [("light", None), ("dark", None), ("light", PHONE), ("dark", PHONE)])
def test_diff_section_in_light_dark_and_phone_layouts(browser, live_server, diff_world, scheme, viewport):
    context = browser.new_context(viewport=viewport or {"width": 1400, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    login(page, live_server)
    open_diffs(page, live_server)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= (viewport or {"width": 1400})["width"], width
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = f"compare-source-diff-{scheme}" + ("-390" if viewport else "")
    page.locator("#source-diff").screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    context.close()


def test_file_set_downloads_as_zip_from_the_run_page(page, live_server, diff_world):
    login(page, live_server)
    page.goto(f"{live_server.url}/w/acme/vision/runs/VIS-1/")
    button = page.get_by_role("link", name="Download model/final (.zip)")
    expect(button).to_be_visible()
    page.locator("#files").screenshot(path=str(SCREENSHOTS / "run-files-download.png"))
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "VIS-1-model-final.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as archive:
        assert archive.read("VIS-1-model-final/weights.bin") == b"w" * 1000
