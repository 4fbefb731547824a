from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse


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


def readyz(request):
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
    from runs.timescale import timescale_status

    checks["timescaledb"] = {"ok": True, "detail": timescale_status()}
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)
