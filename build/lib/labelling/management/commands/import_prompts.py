"""Import prompts (JSONL, CSV), Open Assistant trees or conversations into a project."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import Project
from labelling.importers import DATASET_NAME_RULE, FORMATS, prompt_file_import


class Command(BaseCommand):
    help = (
        "Import a file into a project: JSONL prompts, CSV with a 'prompt' column, Open "
        "Assistant message trees, or human-written conversations as demonstrations "
        "('messages': {\"messages\": [...]} per line; 'instruction': {\"prompt\": ..., "
        '"completion": ...}). The file is checked whole first; if any line is wrong, every '
        "problem is printed and nothing is imported. Everything imported is tagged with a "
        "dataset name."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="The project's slug.")
        parser.add_argument("file", help="The file to import, or - for standard input.")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="The file's format (default: from its name and first line).",
        )
        parser.add_argument(
            "--dataset",
            metavar="NAME",
            help=(
                "The dataset name every imported conversation is tagged with, for exports to "
                f"include or leave out: {DATASET_NAME_RULE} (default: the file's name without "
                "its extension, or 'stdin')."
            ),
        )

    def handle(
        self,
        *args,
        project: str,
        file: str,
        format: str | None,
        dataset: str | None,
        **options,
    ) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project with the slug {project!r}.")
        if file == "-":
            report = prompt_file_import(
                project=target,
                source=sys.stdin.buffer,
                filename="",
                fmt=format,
                dataset="stdin" if dataset is None else dataset,
            )
        else:
            path = Path(file)
            if not path.is_file():
                raise CommandError(f"No such file: {file}")
            with path.open("rb") as source:
                report = prompt_file_import(
                    project=target, source=source, filename=path.name, fmt=format, dataset=dataset
                )
        if not report.ok:
            for problem in report.errors:
                self.stderr.write(str(problem))
            raise CommandError(
                f"{file}: {len(report.errors)} problem(s) found; nothing was imported."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{target.slug} ({report.format}): {report.summary()} Dataset: {report.dataset}"
            )
        )
