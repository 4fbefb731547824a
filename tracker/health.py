from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

# Checks the apps add in their AppConfig.ready() (tracker imports no app):
# name -> (callable returning a detail string, whether a failure makes the server not ready).
_app_checks: dict[str, tuple[Callable[[], str], bool]] = {}


def register_check(name: str, check: Callable[[], str], *, required: bool = False) -> None:
    """Add a check to /readyz; it returns a detail string or raises.

    A required check's failure makes the server not ready; the others only
    report (e.g. which series storage is in use).
    """
    _app_checks[name] = (check, required)


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database():
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        return False, f"{len(pending)} migration(s) not applied"
    return True, f"{connection.vendor} reachable, migrations applied"


def _check_broker():
    from tracker.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return True, f"{conn.transport_cls} reachable"


def _is_staff(request) -> bool:
    try:
        return bool(request.user.is_authenticated and request.user.is_staff)
    except Exception:  # the session lives in the database, which may be what is down
        return False


def readyz(request):
    """Ready or not for anyone (load balancers, probes); what each check found only for staff.

    The details name the database vendor, broker transport and error messages:
    useful to an operator, a map for an attacker.
    """
    checks, ready = {}, True
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        if name == "broker" and not settings.CELERY_BROKER_URL:
            continue
        try:
            ok, detail = check()
        except Exception as exc:  # any failure means "not ready"; report it instead of a 500
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks[name] = {"ok": ok, "detail": detail}
        ready &= ok
    for name, (app_check, required) in _app_checks.items():
        try:
            checks[name] = {"ok": True, "detail": app_check()}
        except Exception as exc:  # e.g. the database is down: reported above, and here too
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
            ready &= not required
    body = {"status": "ready" if ready else "not ready"}
    if _is_staff(request):
        body["checks"] = checks
    response = JsonResponse(body, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    response["Vary"] = "Cookie"
    return response
