"""A failed run's page says why at the top: the traceback (``sys/failure``) preformatted, and the last
lines the run wrote to stderr."""

import re

import pytest

from .conftest import batch, run_url

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 12, in <module>\n'
    "    loss = model(batch)\n"
    "ZeroDivisionError: division by zero"
)


def page_of(client, user, run):
    client.force_login(user)
    response = client.get(f"/w/acme/vision/runs/{run.human_id}/")
    assert response.status_code == 200
    return response.content.decode()


def failure_block(html):
    match = re.search(r'<div class="failure" role="alert">(.*?)</div>', html, re.S)
    return match.group(1) if match else None


@pytest.fixture
def failed_run(owner_api, run):
    stderr = [f"warning {i}: slow batch" for i in range(40)] + ["Traceback (most recent call last):", "boom"]
    ops = [
        {"op": "assign", "path": "sys/failure", "value": TRACEBACK},
        {"op": "append", "path": "monitoring/stderr", "kind": "string", "values": stderr},
        {"op": "append", "path": "monitoring/stdout", "kind": "string", "values": ["epoch 1 done"]},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    assert owner_api.patch(run_url(run), {"state": "failed"}, format="json").status_code == 200
    return run


def test_failed_run_page_shows_the_traceback_preformatted_above_everything_else(client, viewer, failed_run):
    html = page_of(client, viewer, failed_run)
    block = failure_block(html)
    assert block is not None
    escaped = TRACEBACK.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    assert f'<pre class="log traceback">{escaped}</pre>' in block  # line breaks kept, <module> escaped
    assert html.index('class="failure"') < html.index('<nav class="tabs"')


def test_failed_run_page_shows_the_last_lines_of_stderr_only(client, viewer, failed_run):
    block = failure_block(page_of(client, viewer, failed_run))
    tail = re.search(r'<pre class="log stderr-tail">(.*?)</pre>', block, re.S).group(1)
    lines = tail.split("\n")
    assert len(lines) == 20
    assert lines[-2:] == ["Traceback (most recent call last):", "boom"]
    assert "warning 21: slow batch" not in tail and "warning 22: slow batch" in tail
    assert "epoch 1 done" not in block
    assert "all 42 lines" in block


def test_failed_run_without_a_reason_says_so(client, owner, owner_api, run):
    assert owner_api.patch(run_url(run), {"state": "failed"}, format="json").status_code == 200
    block = failure_block(page_of(client, owner, run))
    assert block is not None and "no reason" in block and "stderr" not in block


def test_running_and_finished_runs_show_no_failure_block(client, owner, owner_api, run):
    assert (
        batch(
            owner_api, run, [{"op": "append", "path": "monitoring/stderr", "kind": "string", "values": ["noise"]}]
        ).status_code
        == 200
    )
    assert failure_block(page_of(client, owner, run)) is None
    assert owner_api.patch(run_url(run), {"state": "finished"}, format="json").status_code == 200
    assert failure_block(page_of(client, owner, run)) is None


def test_the_polled_header_carries_the_failure_once_the_run_failed(client, owner, failed_run):
    client.force_login(owner)
    response = client.get(f"/w/acme/vision/runs/{failed_run.human_id}/?fragment=header", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "ZeroDivisionError: division by zero" in failure_block(response.content.decode())
