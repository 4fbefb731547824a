"""Production headers: a strict Content-Security-Policy on every HTML page, no inline script in
our templates, `check --deploy` clean with the README's production settings, /readyz details
for staff only."""

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from runs import services

from .conftest import batch

ROOT = Path(__file__).resolve().parents[1]

# The "Production settings" section of the README, verbatim (a test below checks it is there).
PRODUCTION_ENV = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "runstore.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://runstore.example.com",
    "RUNSTORE_SECURE_COOKIES": "true",
    "RUNSTORE_SSL_REDIRECT": "true",
    "RUNSTORE_SECURE_PROXY_SSL_HEADER": "true",
    "RUNSTORE_HSTS_SECONDS": "31536000",
    "RUNSTORE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "RUNSTORE_HSTS_PRELOAD": "true",
}
SECURITY_SWITCHES = [name for name in PRODUCTION_ENV if name.startswith("RUNSTORE_")]


def policy(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class InlineCode(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, event handler and style
    attributes, javascript: URLs, <style> blocks."""

    def __init__(self):
        super().__init__()
        self.found, self._in_script = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            executable = attrs.get("type") in (None, "", "text/javascript", "module")
            self._in_script = executable and not attrs.get("src")
        if tag == "style":
            self.found.append("<style> block")
        for name, value in attrs.items():
            if name.startswith("on") or name.startswith("hx-on"):
                self.found.append(f"<{tag} {name}=…>")
            if name == "style":
                self.found.append(f'<{tag} style="{value}">')
            if value and re.match(r"\s*javascript:", value, re.I):
                self.found.append(f'<{tag} {name}="{value}">')

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"inline <script>: {data.strip()[:60]}")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def pages(client, owner, project, run, owner_api):
    """Every page of the UI, logged in as the owner, with two runs that have charts."""
    ops = [
        {"op": "assign", "path": "parameters", "value": {"lr": 0.01}},
        {"op": "append", "path": "train/loss", "values": [1.0, 0.5, 0.25]},
    ]
    assert batch(owner_api, run, ops).status_code == 200
    other, _ = services.create_run(owner, project, name="other")
    assert batch(owner_api, other, ops).status_code == 200
    client.force_login(owner)
    base = "/w/acme/vision/"
    return client, {
        "workspace list": "/",
        "project list": "/w/acme/",
        "run table": base,
        "run table, saved widths": base + "?c=sys/id&c=parameters/lr",
        "run page": f"{base}runs/{run.human_id}/",
        "compare": f"{base}compare?runs={run.human_id},{other.human_id}",
        "trash": base + "trash",
        "API tokens": "/settings/tokens/",
        "workspace members": "/w/acme/-/members",
        "teams": "/w/acme/-/teams",
        "custom roles": "/w/acme/-/roles",
        "service accounts": "/w/acme/-/service-accounts",
        "new project": "/w/acme/-/new-project",
        "artifacts": "/w/acme/-/artifacts/",
        "project members": base + "members",
        "project settings": base + "settings",
    }


def test_every_ui_page_has_a_strict_csp(pages):
    client, urls = pages
    for name, url in urls.items():
        response = client.get(url)
        assert response.status_code == 200, name
        directives = policy(response)
        assert directives["script-src"] == ["'self'"], name
        assert directives["style-src"] == ["'self'"], name
        assert directives["default-src"] == ["'self'"] and directives["object-src"] == ["'none'"], name
        assert directives["frame-ancestors"] == ["'none'"] and directives["base-uri"] == ["'self'"], name
        assert directives["form-action"] == ["'self'"] and directives["connect-src"] == ["'self'"], name
        assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff", name
        assert response["Referrer-Policy"] == "same-origin", name


def test_ui_pages_need_no_inline_script_or_style(pages, owner):
    client, urls = pages
    for name, url in urls.items():
        html = client.get(url).content.decode()
        assert inline_code(html) == [], name
    client.logout()
    assert inline_code(client.get("/accounts/login/").content.decode()) == []


def test_htmx_injects_no_styles_and_evaluates_nothing(pages):
    client, urls = pages
    html = client.get(urls["run table"]).content.decode()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert config, "htmx-config meta tag missing"
    assert json.loads(config.group(1)) == {
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
    }


def test_saved_column_widths_and_run_colours_come_as_data_attributes(pages, owner):
    client, urls = pages
    response = client.post(
        "/w/acme/vision/views", {"name": "w", "c": ["sys/id", "parameters/lr"], "widths": "parameters/lr=180"}
    )
    assert response.status_code == 302
    html = client.get(response["Location"]).content.decode()
    assert 'data-width="180"' in html and "width:180px" not in html
    compare = client.get(urls["compare"]).content.decode()
    assert 'class="run-color" value="#1f77b4"' in compare and 'style="' not in compare


def test_login_page_has_a_strict_csp(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert policy(response)["script-src"] == ["'self'"]


def test_admin_pages_have_a_strict_csp(client, db):
    root = User.objects.create_superuser("root", "r@x.org", "pw")
    assert policy(client.get("/admin/login/"))["script-src"] == ["'self'"]
    client.force_login(root)
    for url in ("/admin/", "/admin/auth/user/", f"/admin/auth/user/{root.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        directives = policy(response)
        assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"], url


def test_api_docs_load_their_init_script_from_a_url(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    directives = policy(response)
    assert directives["script-src"] == ["'self'"]
    html = response.content.decode()
    assert not [found for found in inline_code(html) if found.startswith("inline <script>")]
    script = re.search(r'<script src="([^"]*script=[^"]*)"', html)
    assert script, "the Swagger UI init script is not loaded from a URL"
    init = client.get(script.group(1).replace("&amp;", "&"))
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in init.content


def test_browsable_api_has_a_csp_without_inline_script(client, owner, run):
    client.force_login(owner)
    response = client.get("/api/v1/runs/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    directives = policy(response)
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]


def test_json_api_responses_keep_their_headers(owner_api, run):
    response = owner_api.get("/api/v1/runs/")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"


# ---- settings from the environment ---------------------------------------------------


def _run_django(args, env_overrides, tmp_path):
    # a clean environment: nothing of the test run's own (DEBUG, DJANGO_ALLOW_ASYNC_UNSAFE, …) leaks in
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        RUNSTORE_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
    )
    env.update(env_overrides)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = _run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output and "WARNINGS" not in output


def test_check_deploy_warns_without_the_security_switches(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k not in SECURITY_SWITCHES}
    result = _run_django(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output


def test_readme_documents_the_production_settings():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production settings", 1)[1].split("\n## ", 1)[0]
    for name, value in PRODUCTION_ENV.items():
        assert f"{name}={value}" in section, name
    assert "check --deploy --fail-level WARNING" in section
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in SECURITY_SWITCHES:
        assert f"`{name}`" in table, f"{name} has no row in the configuration table"


def test_s3_origin_is_allowed_for_images_media_and_frames(tmp_path):
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']))"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "tracker.settings",
        "RUNSTORE_STORAGE": "s3",
        "RUNSTORE_S3_ENDPOINT_URL": "https://objects.example.net:8333/some/path",
    }
    result = _run_django(["-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    directives = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("img-src", "media-src", "frame-src"):
        assert "https://objects.example.net:8333" in directives[name], name
    assert directives["script-src"] == ["'self'"] and directives["connect-src"] == ["'self'"]


def test_production_switches_set_the_django_settings(tmp_path):
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps(["
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
        "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, s.SECURE_PROXY_SSL_HEADER]))"
    )
    on = _run_django(["-c", code], {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "tracker.settings"}, tmp_path)
    assert on.returncode == 0, on.stderr
    assert json.loads(on.stdout.strip().splitlines()[-1]) == [
        True,
        True,
        True,
        31536000,
        True,
        True,
        ["HTTP_X_FORWARDED_PROTO", "https"],
    ]
    off = _run_django(["-c", code], {"DJANGO_SETTINGS_MODULE": "tracker.settings"}, tmp_path)
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout.strip().splitlines()[-1]) == [False, False, False, 0, False, False, None]


def test_ssl_redirect_spares_the_health_probes_and_trusts_the_proxy_header(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    assert client.get("/accounts/login/").status_code == 301
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    behind_proxy = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy.status_code == 200
    assert behind_proxy["Strict-Transport-Security"] == "max-age=3600"


# ---- /readyz ----------------------------------------------------------------------------


def test_readyz_tells_anonymous_callers_only_ready(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_tells_non_staff_users_only_ready(client, owner):
    client.force_login(owner)
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_shows_staff_the_checks(client, owner):
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    body = client.get("/readyz").json()
    assert body["status"] == "ready" and body["checks"]["database"]["ok"] is True


def test_readyz_not_ready_hides_the_failure_from_anonymous_callers(client, owner):
    from tracker.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        anonymous = client.get("/readyz")
        owner.is_staff = True
        owner.save()
        client.force_login(owner)
        staff = client.get("/readyz")
    finally:
        app.conf.broker_url = old
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "not ready"}
    assert staff.status_code == 503 and staff.json()["checks"]["broker"]["ok"] is False
