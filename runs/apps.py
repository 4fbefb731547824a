from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self):
        from projects import activity as project_activity
        from projects import services as project_services
        from tracker import health, metrics

        from . import cleanup, rollups, timescale, usage  # timescale also logs which series storage is in use
        from .query import budget  # noqa: F401  (SQLite connections get the RE2 REGEXP function)

        health.register_check("timescaledb", timescale.timescale_status)
        metrics.register_gauges(rollups.lag_metrics)
        project_activity.register(usage.annotate_project_activity)
        project_services.project_emptying.connect(cleanup.purge_project, dispatch_uid="runs.purge_project")
