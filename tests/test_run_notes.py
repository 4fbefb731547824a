"""A run's notes (``sys/description``): edited in Markdown on the run page, shown as sanitised HTML."""

import re

import pytest
from django.test import Client

from runs.models import Run

HOSTILE = """# Findings

**lr 3e-4** beats 1e-3, see [the report](https://example.com/report).

<script>alert("notes")</script>
<img src=x onerror="alert(1)">
<a href="https://evil.example" onclick="steal()">raw link</a>
[click me](javascript:alert(document.cookie))
[also](JaVaScRiPt:alert(1))
[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
<style>body{display:none}</style>

| lr | acc |
|----|-----|
| 3e-4 | 0.91 |
"""


def ui(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def notes_url(run, suffix=""):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/notes{suffix}"


def page_url(run):
    return f"/w/{run.project.workspace.slug}/{run.project.slug}/runs/{run.human_id}/"


@pytest.mark.django_db
def test_contributor_saves_markdown_notes_rendered_as_html(contributor, run):
    client = ui(contributor)
    response = client.post(
        notes_url(run), {"notes": "# Findings\n\n- **lr** 3e-4\n- `batch` 64"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Findings</h1>" in html and "<strong>lr</strong>" in html and "<code>batch</code>" in html
    run.refresh_from_db()
    assert run.description.startswith("# Findings")
    page = ui(contributor).get(page_url(run)).content.decode()
    assert "<h1>Findings</h1>" in page and "Edit notes" in page


@pytest.mark.django_db
def test_notes_never_pass_script_raw_html_or_javascript_links(owner, run):
    assert ui(owner).post(notes_url(run), {"notes": HOSTILE}).status_code == 302
    html = ui(owner).get(page_url(run)).content.decode()
    block = html[html.index('id="run-notes"') :]
    block = block[: block.index("</section>")]
    assert "<script" not in block and "<img" not in block and "<style" not in block
    assert not re.search(r"<[a-z][^>]*\son\w+\s*=", block), "an element kept an event handler"
    hrefs = re.findall(r'<a\s[^>]*?href="([^"]*)"', block)
    assert not [h for h in hrefs if h.lower().startswith(("javascript:", "data:", "vbscript:"))]
    assert "https://evil.example" not in hrefs  # a raw <a> is text, not a link
    # raw HTML is shown as text, escaped
    assert "&lt;script&gt;" in block
    # the one real link keeps its address and opens without handing over the page
    assert '<a href="https://example.com/report" rel="noopener nofollow noreferrer">the report</a>' in block
    assert "<table>" in block and "<td>0.91</td>" in block


@pytest.mark.django_db
def test_viewer_reads_notes_but_may_not_edit(owner, viewer, run):
    Run.objects.filter(pk=run.pk).update(description="*keep* this")
    client = ui(viewer)
    page = client.get(page_url(run)).content.decode()
    assert "<em>keep</em>" in page and "Edit notes" not in page
    assert client.get(notes_url(run), {"edit": "1"}).status_code == 403
    assert client.post(notes_url(run), {"notes": "vandalised"}).status_code == 403
    run.refresh_from_db()
    assert run.description == "*keep* this"


@pytest.mark.django_db
def test_stranger_and_anonymous_cannot_reach_notes(stranger, run):
    assert ui(stranger).get(notes_url(run)).status_code == 404
    assert ui(stranger).post(notes_url(run), {"notes": "x"}).status_code == 404
    response = ui(None).post(notes_url(run), {"notes": "x"})
    assert response.status_code == 302 and "/login" in response["Location"]
    run.refresh_from_db()
    assert run.description == ""


@pytest.mark.django_db
def test_editor_holds_the_current_notes_and_too_long_notes_are_refused(owner, run):
    Run.objects.filter(pk=run.pk).update(description="line <b>one</b>")
    editor = ui(owner).get(notes_url(run), {"edit": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<textarea" in editor and "line &lt;b&gt;one&lt;/b&gt;</textarea>" in editor
    response = ui(owner).post(notes_url(run), {"notes": "x" * 70_000})
    assert response.status_code == 400 and response.content.decode().startswith("notes:")
    run.refresh_from_db()
    assert run.description == "line <b>one</b>"


@pytest.mark.django_db
def test_without_javascript_the_edit_link_opens_the_run_page_with_the_editor(owner, viewer, run):
    page = ui(owner).get(page_url(run), {"notes": "edit"}).content.decode()
    assert '<textarea id="notes-text" name="notes"' in page and "Save notes" in page
    assert "Save notes" not in ui(viewer).get(page_url(run), {"notes": "edit"}).content.decode()


@pytest.mark.django_db
def test_clearing_notes_shows_the_empty_state(owner, run):
    Run.objects.filter(pk=run.pk).update(description="old")
    html = ui(owner).post(notes_url(run), {"notes": "  "}, HTTP_HX_REQUEST="true").content.decode()
    assert "No notes" in html
