"""Compare: side-by-side diffs of two runs' source (``source_code/diff``, ``source_code/files``) and
environment (``environment/packages``)."""

import re

import pytest
from django.test import Client

from runs import services as run_services
from runs.views import diffs

from .conftest import batch, client_for
from .test_files import upload

LEFT_PACKAGES = "numpy==1.26.4\ntorch==2.2.0\nrequests==2.31.0\nPillow==10.0.0\n"
RIGHT_PACKAGES = "numpy==2.1.0\ntorch==2.2.0\nrequests==2.31.0\nscipy==1.14.1\n"
LEFT_TRAIN = "import torch\n\nLR = 1e-3\nEPOCHS = 10\n\n\ndef main():\n    train(LR)\n"
RIGHT_TRAIN = "import torch\n\nLR = 3e-4\nEPOCHS = 10\n\n\ndef main():\n    train(LR)\n    evaluate()\n"


@pytest.fixture
def local_blobs(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


def log_files(client, run, files: dict[str, bytes], file_set: dict[str, bytes] | None = None, seq=1):
    ops = []
    for path, content in files.items():
        sha = upload(client, run, path.rsplit("/", 1)[-1] + ".txt", content).json()["sha256"]
        ops.append({"op": "upload", "path": path, "sha256": sha, "name": path.rsplit("/", 1)[-1]})
    if file_set:
        entries = [
            {"relpath": rel, "sha256": upload(client, run, rel, content).json()["sha256"]}
            for rel, content in file_set.items()
        ]
        ops.append({"op": "upload_set", "path": "source_code/files", "files": entries})
    assert batch(client, run, ops, seq=seq).status_code == 200


@pytest.fixture
def two_runs(project, owner, run, local_blobs):
    other, _ = run_services.create_run(owner, project, name="lower lr")
    api = client_for(owner)
    log_files(
        api,
        run,
        {"environment/packages": LEFT_PACKAGES.encode(), "source_code/diff": b"-a = 1\n+a = 2\n"},
        {"train.py": LEFT_TRAIN.encode(), "same.py": b"print('same')\n"},
    )
    log_files(
        api,
        other,
        {"environment/packages": RIGHT_PACKAGES.encode(), "source_code/diff": b"-a = 1\n+a = 3\n"},
        {"train.py": RIGHT_TRAIN.encode(), "same.py": b"print('same')\n"},
    )
    return run, other


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def diffs_url(project, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/w/{project.workspace.slug}/{project.slug}/compare/diffs?{query}"


def package_rows(html: str) -> dict[str, tuple[str, str, str]]:
    table = html[html.index('class="grid package-diff"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr class="pkg-(\w+)"><th scope="row">([^<]+)</th><td>([^<]*)</td><td>([^<]*)</td>', table)
    return {name: (change, left, right) for change, name, left, right in rows}


@pytest.mark.django_db
def test_package_table_shows_added_removed_and_changed_versions(viewer, project, two_runs):
    left, right = two_runs
    response = ui(viewer).get(diffs_url(project, runs=f"{left.human_id},{right.human_id}"))
    assert response.status_code == 200
    html = response.content.decode()
    assert package_rows(html) == {
        "numpy": ("changed", "1.26.4", "2.1.0"),
        "Pillow": ("removed", "10.0.0", "—"),
        "scipy": ("added", "—", "1.14.1"),
    }
    assert "1 added" in html and "1 removed" in html and "1 changed" in html and "2 unchanged" in html


@pytest.mark.django_db
def test_source_files_are_diffed_side_by_side(viewer, project, two_runs):
    left, right = two_runs
    html = ui(viewer).get(diffs_url(project, runs=f"{left.human_id},{right.human_id}")).content.decode()
    train = html[html.index('data-label="source_code/files/train.py"') :]
    train = train[: train.index("</details>")]
    # the characters that changed within a line are marked
    changed_row = re.search(r'<tr class="replace">.*?</tr>', train).group(0)
    assert "<mark>" in changed_row
    train = re.sub(r"</?mark>", "", train)
    # the changed line on both sides, in one row; the added line on the right only
    assert re.search(
        r'<tr class="replace"><td class="ln">3</td><td class="l">LR = 1e-3</td><td class="ln">3</td>'
        r'<td class="r">LR = 3e-4</td></tr>',
        train,
    )
    assert re.search(r'<tr class="insert"><td class="ln"></td><td class="l"></td><td class="ln">9</td>'
                     r'<td class="r">    evaluate\(\)</td></tr>', train)  # fmt: skip
    assert "+2" in train and "−1" in train
    # the git diff is compared first, and identical files say so without a table
    assert html.index('data-label="source_code/diff"') < html.index('data-label="source_code/files/same.py"')
    same = html[html.index('data-label="source_code/files/same.py"') :]
    assert "identical" in same[: same.index("</details>")] and "side-by-side" not in same[: same.index("</details>")]
    # the package list's own text diff
    assert 'data-label="environment/packages"' in html and "numpy==2.1.0" in re.sub(r"</?mark>", "", html)


@pytest.mark.django_db
def test_diff_text_is_escaped(owner, project, run, local_blobs):
    other, _ = run_services.create_run(owner, project, name="b")
    api = client_for(owner)
    log_files(api, run, {"source_code/diff": b"x\n"})
    log_files(api, other, {"source_code/diff": b"<script>alert(1)</script>\n"})
    html = ui(owner).get(diffs_url(project, runs=f"{run.human_id},{other.human_id}")).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.django_db
def test_left_and_right_choose_among_the_compared_runs(owner, project, two_runs):
    left, right = two_runs
    third, _ = run_services.create_run(owner, project, name="no capture")
    ids = f"{left.human_id},{right.human_id},{third.human_id}"
    html = ui(owner).get(diffs_url(project, runs=ids, left=right.human_id, right=third.human_id)).content.decode()
    assert f'<option value="{right.human_id}" selected' in html
    # the third run logged nothing: the other's packages are all "removed"
    assert package_rows(html)["numpy"] == ("removed", "2.1.0", "—")
    assert f"{third.human_id} logged no package list" in html


@pytest.mark.django_db
def test_big_inputs_are_capped_with_a_note(owner, project, run, local_blobs, monkeypatch):
    monkeypatch.setattr(diffs, "MAX_LINES", 50)
    monkeypatch.setattr(diffs, "MAX_ROWS", 30)
    other, _ = run_services.create_run(owner, project, name="big")
    api = client_for(owner)
    log_files(api, run, {"source_code/diff": "".join(f"a{i}\n" for i in range(200)).encode()})
    log_files(api, other, {"source_code/diff": "".join(f"b{i}\n" for i in range(200)).encode()})
    html = ui(owner).get(diffs_url(project, runs=f"{run.human_id},{other.human_id}")).content.decode()
    assert "or 50 lines of each side" in html and "Showing the first 30 rows" in html
    assert '+50</span> <span class="del-count">−50' in html  # 50 lines compared on each side, not 200
    assert html.count("<tr class=") <= 30


@pytest.mark.django_db
def test_stranger_cannot_see_the_diffs_and_foreign_runs_are_ignored(stranger, viewer, project, two_runs):
    left, right = two_runs
    url = diffs_url(project, runs=f"{left.human_id},{right.human_id}")
    assert ui(stranger).get(url).status_code == 404
    response = ui(None).get(url)
    assert response.status_code == 302 and "/login" in response["Location"]
    assert ui(viewer).get(diffs_url(project, runs="VIS-999")).status_code == 404


@pytest.mark.django_db
def test_compare_page_offers_the_diff_section_for_two_runs(viewer, project, two_runs):
    left, right = two_runs
    base = f"/w/{project.workspace.slug}/{project.slug}/compare?runs="
    page = ui(viewer).get(base + f"{left.human_id},{right.human_id}").content.decode()
    assert 'id="source-diff"' in page and "/compare/diffs?runs=" in page
    assert 'id="source-diff"' not in ui(viewer).get(base + left.human_id).content.decode()
