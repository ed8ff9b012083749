"""Fill the per-ranking quality figures of complete ranking sets that have none yet."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import Project
from annotations.ranking_quality import rankings_quality_backfill, sets_missing_quality


class Command(BaseCommand):
    help = (
        "Compute Ranking.consensus_agreement, length_pairs and longer_preferred for complete "
        "ranking sets where they are empty (sets completed before these figures existed). "
        "Batched, one transaction per batch; safe to interrupt and run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", metavar="SLUG", help="Only this project's sets.")
        parser.add_argument(
            "--batch", type=int, default=2000, help="Sets per transaction (default 2000)."
        )

    def handle(self, *args, project: str | None, batch: int, **options) -> None:
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        chosen = None
        if project is not None:
            chosen = Project.objects.filter(slug=project).first()
            if chosen is None:
                raise CommandError(f"No project with the slug {project!r}.")
        total = sets_missing_quality(project=chosen).count()
        self.stdout.write(f"{total} complete sets need figures.")
        started = time.monotonic()

        def progress(sets_done: int, rankings_done: int) -> None:
            rate = sets_done / max(time.monotonic() - started, 1e-6)
            self.stdout.write(
                f"{sets_done}/{total} sets, {rankings_done} rankings ({rate:,.0f} sets/s)"
            )

        sets_done, rankings_done = rankings_quality_backfill(
            project=chosen, batch=batch, progress=progress
        )
        self.stdout.write(
            self.style.SUCCESS(f"Filled {rankings_done} rankings in {sets_done} sets.")
        )
