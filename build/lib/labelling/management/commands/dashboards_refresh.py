"""Bring the dashboards' rollups current now, or rebuild them, without waiting for beat."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import Project
from labelling.dashboards.rollups import rollups_rebuild, rollups_refresh


class Command(BaseCommand):
    help = (
        "Bring the lead dashboards' figures current (what the beat task does every minute), or "
        "with --rebuild recompute them from the data: all of it, or from --since on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--project", metavar="SLUG", help="One project (default: every active one)."
        )
        parser.add_argument(
            "--rebuild", action="store_true", help="Recompute instead of bringing current."
        )
        parser.add_argument(
            "--since", metavar="YYYY-MM-DD", help="With --rebuild: only the days from this one on."
        )

    def handle(
        self, *args, project: str | None, rebuild: bool, since: str | None, **options
    ) -> None:
        if since is not None and not rebuild:
            raise CommandError("--since: only with --rebuild.")
        try:
            since_day = date.fromisoformat(since) if since else None
        except ValueError as error:
            raise CommandError(f"--since: {since!r} is not a date (YYYY-MM-DD).") from error
        projects = Project.objects.filter(is_active=True).order_by("pk")
        if project is not None:
            projects = Project.objects.filter(slug=project)
            if not projects.exists():
                raise CommandError(f"--project: no project {project!r}.")
        for each in projects:
            if rebuild:
                rollups_rebuild(project=each, since=since_day)
                self.stdout.write(
                    f"{each.slug}: rebuilt" + (f" from {since_day}" if since_day else "")
                )
            else:
                read = rollups_refresh(project=each)
                self.stdout.write(f"{each.slug}: brought current ({read:,} source rows read)")
