import logging

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from runs import series


class Command(BaseCommand):
    help = (
        "Pack series points stored as rows into blocks (what migration runs.0015 does; safe to rerun, "
        "and an interrupted run resumes where it stopped)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, database, **options):
        handler = logging.StreamHandler(self.stdout)
        log = logging.getLogger("runstore.series")
        log.addHandler(handler)
        level = log.level
        log.setLevel(logging.INFO)
        try:
            done = series.pack_existing(using=database)
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
        for table, points in done.items():
            self.stdout.write(f"{table}: {points} points packed into blocks")
