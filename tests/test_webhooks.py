"""Webhooks: signed deliveries of run events to a real HTTP receiver, retries, the delivery log,
redelivery, the SSRF guard, permissions and the cost on the write path."""

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import services as run_services
from runs.models import Run
from runs.webhooks import events as webhook_events
from runs.webhooks import services
from runs.webhooks.models import Delivery, DeliveryStatus
from tests.conftest import batch, run_url

pytestmark = pytest.mark.django_db

ALL_RUN_EVENTS = [
    "run.created",
    "run.finished",
    "run.failed",
    "run.crashed",
    "run.tag_added",
    "run.tag_removed",
    "run.query_matched",
]


class Receiver:
    """An HTTP server on 127.0.0.1 in a thread: records each request, answers from a script."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list = []  # status codes (or callables taking the handler) answered in turn; then 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                answer = receiver.script.pop(0) if receiver.script else 200
                if callable(answer):
                    answer(self)
                    return
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                text = f"answer {answer} " + "x" * 3000
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path="/hook", host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def bodies(self):
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def eager(settings):
    """Tasks run in the caller (Celery's eager mode), retries without waiting; the local receiver allowed."""
    from tracker.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    settings.RUNSTORE_WEBHOOK_RETRY_DELAY = 0
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield
    app.conf.task_always_eager = before


def make_hook(owner, project, receiver, events=ALL_RUN_EVENTS, query="", **kwargs):
    return services.create_webhook(
        owner, project, url=receiver.url(), events=events, query=query, secret="s3cret", **kwargs
    )


def verify(secret: str, request: dict) -> bool:
    """What a receiver does (the README's recipe): HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-Runstore-Signature-256"])


def test_run_events_are_delivered_signed_to_a_real_receiver(
    eager, receiver, owner, project, owner_api, django_capture_on_commit_callbacks
):
    make_hook(owner, project, receiver, query="eval/acc > 0.9")
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/runs/", {"project": "acme/vision", "name": "r1"}, format="json")
    assert response.status_code == 201
    run = Run.objects.get(name="r1")
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            batch(owner_api, run, [{"op": "add_tags", "path": "sys/tags", "values": ["good", "best"]}]).status_code
            == 200
        )
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            batch(owner_api, run, [{"op": "remove_tags", "path": "sys/tags", "values": ["best"]}], seq=2).status_code
            == 200
        )
    with django_capture_on_commit_callbacks(execute=True):  # does not match yet: nothing
        batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.5}], seq=3)
    with django_capture_on_commit_callbacks(execute=True):  # now matches
        batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.95}], seq=4)
    with django_capture_on_commit_callbacks(execute=True):  # another field: no query event
        batch(owner_api, run, [{"op": "assign", "path": "eval/loss", "value": 0.1}], seq=5)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_api.patch(run_url(run), {"state": "finished"}, format="json").status_code == 200

    events = [b["event"] for b in receiver.bodies()]
    assert events == ["run.created", "run.tag_added", "run.tag_removed", "run.query_matched", "run.finished"]
    for request in receiver.requests:
        assert verify("s3cret", request)
        body = json.loads(request["body"])
        assert request["headers"]["X-Runstore-Event"] == body["event"]
        assert request["headers"]["X-Runstore-Delivery"] == body["id"]
        assert request["headers"]["X-Runstore-Timestamp"].isdigit()
        assert body["run"]["id"] == run.human_id and body["project"]["name"] == "acme/vision"
        assert set(body) == {"id", "event", "created_at", "project", "run", "data"}
    bodies = receiver.bodies()
    assert bodies[1]["data"] == {"tags": ["best", "good"]}
    assert bodies[2]["data"] == {"tags": ["best"]}
    assert bodies[3]["data"] == {"query": "eval/acc > 0.9", "changed": ["eval/acc"]}
    assert bodies[4]["run"]["state"] == "finished"
    assert Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 5


def test_failed_run_and_ui_tagging_are_delivered(
    eager, receiver, owner, project, run, owner_api, django_capture_on_commit_callbacks
):
    make_hook(owner, project, receiver, events=["run.failed", "run.tag_added", "run.tag_removed"])
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"], remove=["base"])
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_api.patch(run_url(run), {"state": "failed"}, format="json").status_code == 200
    assert [(b["event"], b["data"]) for b in receiver.bodies()] == [
        ("run.tag_added", {"tags": ["x"]}),
        ("run.tag_removed", {"tags": ["base"]}),
        ("run.failed", {"state": "failed"}),
    ]


def test_crashed_runs_are_delivered(eager, receiver, owner, project, run, django_capture_on_commit_callbacks):
    make_hook(owner, project, receiver, events=["run.crashed"])
    Run.objects.filter(pk=run.pk).update(ping_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert run_services.mark_crashed_runs() == 1
    assert [(b["event"], b["run"]["id"], b["run"]["state"]) for b in receiver.bodies()] == [
        ("run.crashed", run.human_id, "crashed")
    ]


def test_a_500_is_retried_and_the_log_shows_both_attempts(
    eager, receiver, owner, project, run, owner_api, django_capture_on_commit_callbacks
):
    hook = make_hook(owner, project, receiver, events=["run.finished"])
    receiver.script = [500, 200]
    with django_capture_on_commit_callbacks(execute=True):
        owner_api.patch(run_url(run), {"state": "finished"}, format="json")
    assert len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    ids = {r["headers"]["X-Runstore-Delivery"] for r in receiver.requests}
    delivery = Delivery.objects.get(webhook=hook)
    assert ids == {str(delivery.delivery_id)}
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 2, 200)
    log = list(delivery.attempt_log.values_list("number", "response_code", "succeeded"))
    assert log == [(1, 500, False), (2, 200, True)]
    first = delivery.attempt_log.get(number=1)
    assert first.response_excerpt.startswith("answer 500") and len(first.response_excerpt) == 1024
    assert first.latency_ms is not None and "HTTP 500" in first.error


def test_attempts_stop_after_the_configured_number(
    eager, settings, receiver, owner, project, run, django_capture_on_commit_callbacks
):
    settings.RUNSTORE_WEBHOOK_MAX_ATTEMPTS = 3
    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    receiver.script = [503, 429, 502, 200]
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    assert len(receiver.requests) == 3
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 3, 502)


def test_retry_delays_grow_exponentially_with_jitter(settings):
    settings.RUNSTORE_WEBHOOK_RETRY_DELAY = 10
    for attempt, base in [(1, 10), (2, 20), (3, 40), (5, 160)]:
        delay = services.retry_delay(attempt)
        assert base * 0.8 <= delay <= base * 1.2


def test_a_404_is_final(eager, receiver, owner, project, run, django_capture_on_commit_callbacks):
    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    receiver.script = [404, 200]
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    assert len(receiver.requests) == 1
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 404)


def test_a_timeout_is_recorded(eager, settings, receiver, owner, project, run, django_capture_on_commit_callbacks):
    settings.RUNSTORE_WEBHOOK_TIMEOUT = 0.3
    settings.RUNSTORE_WEBHOOK_MAX_ATTEMPTS = 1

    def slow(handler):
        time.sleep(1.0)

    receiver.script = [slow]
    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    assert delivery.status == "failed" and delivery.response_code is None
    assert "timed out after 0.3 s" in delivery.error


def test_redirects_are_not_followed(eager, receiver, owner, project, run, django_capture_on_commit_callbacks):
    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", receiver.url("/elsewhere"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver.script = [redirect]
    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    delivery = Delivery.objects.get(webhook=hook)
    assert (delivery.status, delivery.response_code) == ("failed", 302)
    assert "redirects are not followed" in delivery.error


def test_redeliver_sends_the_same_payload_with_the_same_delivery_id(
    eager, receiver, owner, project, run, django_capture_on_commit_callbacks
):
    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    receiver.script = [404]
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    assert delivery.status == "failed"
    with django_capture_on_commit_callbacks(execute=True):
        services.redeliver(owner, delivery)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"]["X-Runstore-Delivery"] == second["headers"]["X-Runstore-Delivery"]
    assert verify("s3cret", second)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://10.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
    ],
)
def test_forbidden_addresses_are_refused_when_saved(settings, receiver, owner, project, url):
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(ValidationError) as refused:
        services.create_webhook(owner, project, url=url.format(port=receiver.port), events=["run.created"])
    assert "url" in refused.value.message_dict
    assert "RUNSTORE_WEBHOOK_ALLOWED_NETWORKS" in refused.value.message_dict["url"][0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_delivery_to_a_forbidden_address_makes_no_connection(
    eager, settings, receiver, owner, project, run, host, django_capture_on_commit_callbacks
):
    hook = services.create_webhook(owner, project, url=receiver.url(host=host), events=["run.tag_added"])
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = []  # the admin withdrew the allowance since
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    assert receiver.requests == []
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # refused: final, not retried
    assert delivery.error.startswith("refused:")


def test_only_http_and_https_urls_are_saved(owner, project):
    for url in ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com", "http://user:pw@example.com/"]:
        with pytest.raises(ValidationError) as refused:
            services.create_webhook(owner, project, url=url, events=["run.created"])
        assert "url" in refused.value.message_dict


def test_the_connection_goes_to_the_checked_address(eager, settings, receiver, monkeypatch):
    """The host is resolved once and the request sent to that address (Host header keeps the name):
    a second, different DNS answer is never asked for."""
    from runs.webhooks import network

    answers = iter(["127.0.0.1", "10.9.9.9"])
    calls = []

    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host != "hooks.example.test":  # the checked address itself (an IP literal: no DNS)
            return real_getaddrinfo(host, port, *args, **kwargs)
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    response = network.post(receiver.url(host="hooks.example.test"), b"{}", {}, timeout=5)
    assert response.status == 200
    assert calls == ["hooks.example.test"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.test:{receiver.port}"


def test_model_stage_change_is_an_event_with_a_public_emitter(
    eager, receiver, owner, project, run, django_capture_on_commit_callbacks
):
    make_hook(owner, project, receiver, events=["model_version.stage_changed"])
    with django_capture_on_commit_callbacks(execute=True):
        webhook_events.emit_model_stage_changed(
            project, model="resnet", version=3, from_stage="staging", to_stage="production", run=run, by=owner
        )
    (body,) = receiver.bodies()
    assert body["event"] == "model_version.stage_changed"
    assert body["data"] == {
        "model": "resnet",
        "version": 3,
        "from_stage": "staging",
        "to_stage": "production",
        "by": owner.username,
    }
    assert body["run"]["id"] == run.human_id


def test_only_project_managers_may_manage_webhooks(receiver, settings, owner, contributor, stranger, project):
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with pytest.raises(PermissionDenied):
        services.create_webhook(contributor, project, url=receiver.url(), events=["run.created"])
    with pytest.raises(Http404):
        services.create_webhook(stranger, project, url=receiver.url(), events=["run.created"])
    hook = services.create_webhook(owner, project, url=receiver.url(), events=["run.created"])
    assert len(hook.secret) >= 32  # generated


def test_a_project_without_webhooks_adds_at_most_one_query_per_batch(
    owner_api, run, django_capture_on_commit_callbacks
):
    ops = [{"op": "append", "path": "train/loss", "values": [0.5, 0.4]}]
    batch(owner_api, run, ops, seq=1)  # warm up: the field exists, the token is cached as it would be
    with CaptureQueriesContext(connection) as during:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert batch(owner_api, run, ops, seq=2).status_code == 200
    with CaptureQueriesContext(connection) as after:
        for callback in callbacks:
            callback()
    assert [q["sql"] for q in during.captured_queries if "webhooks_" in q["sql"]] == []  # none in the write
    lookups = [q["sql"] for q in after.captured_queries if "webhooks_" in q["sql"]]
    assert len(lookups) == 1 and "webhooks_webhook" in lookups[0]  # one look-up after the commit


# --- the UI and the admin -------------------------------------------------------------

HOOKS_URL = "/w/acme/vision/settings/webhooks"


def test_a_bad_url_is_a_400_naming_the_field(client, owner, project):
    client.force_login(owner)
    response = client.post(HOOKS_URL, {"url": "http://169.254.169.254/latest", "events": ["run.created"]})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["url"] and "169.254.169.254" in errors["url"][0]
    assert b"RUNSTORE_WEBHOOK_ALLOWED_NETWORKS" in response.content
    response = client.post(HOOKS_URL, {"url": "https://93.184.216.34/x", "events": ["run.created"], "query": "a >"})
    assert response.status_code == 400 and list(response.context["form"].errors) == ["query"]


def test_webhook_pages_are_for_project_managers(client, owner, contributor, stranger, project):
    for user, status in [(stranger, 404), (contributor, 403), (owner, 200)]:
        client.force_login(user)
        assert client.get(HOOKS_URL).status_code == status


def test_the_owner_creates_pings_and_redelivers_from_the_ui(
    eager, client, receiver, owner, project, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    response = client.post(HOOKS_URL, {"url": receiver.url(), "events": ["run.created", "run.failed"], "active": "on"})
    assert response.status_code == 302
    hook = project.webhooks.get()
    assert hook.events == ["run.created", "run.failed"] and hook.active
    receiver.script = [500]
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"{HOOKS_URL}/{hook.pk}/ping").status_code == 302
    delivery = Delivery.objects.get(webhook=hook)
    assert (delivery.event, delivery.status, delivery.attempts) == ("ping", "failed", 1)  # a ping is not retried
    page = client.get(f"{HOOKS_URL}/{hook.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(delivery.delivery_id) in html and "answer 500" in html and "Redeliver" in html
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"{HOOKS_URL}/{hook.pk}/deliveries/{delivery.pk}/redeliver").status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 2, 200)
    assert [verify(hook.secret, r) for r in receiver.requests] == [True, True]
    assert client.post(f"{HOOKS_URL}/{hook.pk}/delete").status_code == 302
    assert not project.webhooks.exists()


def test_the_admin_redelivers_from_the_delivery_log(
    eager, client, receiver, owner, project, run, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import User

    hook = make_hook(owner, project, receiver, events=["run.tag_added"])
    receiver.script = [404]
    with django_capture_on_commit_callbacks(execute=True):
        run_services.tag_runs(owner, project, [run], add=["x"])
    delivery = Delivery.objects.get(webhook=hook)
    client.force_login(User.objects.create_superuser("root", "r@x.org", "pw"))
    assert client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/webhooks/delivery/", {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert len({r["headers"]["X-Runstore-Delivery"] for r in receiver.requests}) == 1


def test_query_events_repeat_while_the_run_matches_and_follow_sys_fields(
    eager, receiver, owner, project, run, owner_api, django_capture_on_commit_callbacks
):
    make_hook(owner, project, receiver, events=["run.query_matched"], query='eval/acc > 0.9 and sys/state = "finished"')
    steps = [
        lambda: batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.95}], seq=1),  # not finished
        lambda: owner_api.patch(run_url(run), {"state": "finished"}, format="json"),  # now matches: sent
        lambda: batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.97}], seq=2),  # still: sent
        lambda: batch(owner_api, run, [{"op": "assign", "path": "other/x", "value": 1}], seq=3),  # not named
        lambda: batch(owner_api, run, [{"op": "assign", "path": "eval/acc", "value": 0.5}], seq=4),  # no match
    ]
    for step in steps:
        with django_capture_on_commit_callbacks(execute=True):
            assert step().status_code == 200
    assert [b["data"]["changed"] for b in receiver.bodies()] == [["sys/state"], ["eval/acc"]]


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_the_certificate(settings, tmp_path, monkeypatch):
    """The TLS connection is made to the pinned address, yet sends the URL's name as SNI and checks the
    certificate against that name (a certificate for another name is refused)."""
    import shutil
    import ssl
    import subprocess

    from runs.webhooks import network

    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a test certificate")
    settings.RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key)]
        + ["-out", str(cert), "-subj", "/CN=hooks.example.test", "-addext", "subjectAltName=DNS:hooks.example.test"],
        check=True,
        capture_output=True,
    )
    server = Receiver()
    names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.thread.start()
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host in ("hooks.example.test", "other.example.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(network.certifi, "where", lambda: str(cert))
    try:
        ok = network.post(f"https://hooks.example.test:{server.port}/hook", b"{}", {}, timeout=5)
        wrong = network.post(f"https://other.example.test:{server.port}/hook", b"{}", {}, timeout=5)
    finally:
        server.server.shutdown()
        server.server.server_close()
    assert ok.status == 200 and names[0] == "hooks.example.test"
    assert server.requests[0]["headers"]["Host"] == f"hooks.example.test:{server.port}"
    assert wrong.status is None and "connection failed" in wrong.error
    assert len(server.requests) == 1
