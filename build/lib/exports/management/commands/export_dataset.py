"""Write a project's dataset into a folder: JSONL per split, manifest.json and README.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.template.defaultfilters import filesizeformat

from annotations.models import Project
from exports.choice_docs import CHOICE_DOCS, CHOICE_NAMES, applies_note
from exports.choices import LIST_CHOICES, ExportKind, PairsFrom, PairStrategy, Ties
from exports.services import export_choices_clean, export_write

FLOATS = ("min_agreement", "validation", "test")
FLAGS = (
    "include_rewrites",
    "length_balanced",
    "include_incomplete",
    "include_cancelled",
    "allow_model_turns",
    "best_path_only",
    "gzip",
)
ENUMS = {"pairs_from": PairsFrom, "pair_strategy": PairStrategy, "ties": Ties}
LISTS = LIST_CHOICES
# What an earlier export left in a folder; --force replaces these and touches nothing else.
DATASET_FILES = tuple(
    f"{split}{suffix}"
    for split in ("train", "validation", "test")
    for suffix in (".jsonl", ".jsonl.gz")
) + ("manifest.json", "README.md")


def option_name(field: str) -> str:
    return {"choices": "--choices-json"}.get(field, f"--{field.replace('_', '-')}")


class ProgressBar:
    """`[#####-----] 1200/5000 rows (24%), 3,100 rows/s`, redrawn in place on stderr."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream
        self.total: int | None = None
        self.started = time.monotonic()
        self.width_drawn = 0

    def expected(self, total: int) -> None:
        self.total = total
        self.draw(0)

    def __call__(self, written: int) -> None:
        self.draw(written)

    def draw(self, written: int, *, total: int | None = None, suffix: str = "") -> None:
        total = self.total if total is None else total
        elapsed = max(time.monotonic() - self.started, 1e-6)
        share = 1.0 if not total else min(1.0, written / total)
        filled = int(share * self.WIDTH)
        line = (
            f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {written}/"
            f"{'?' if total is None else total} rows ({share:.0%}), "
            f"{written / elapsed:,.0f} rows/s{suffix}"
        )
        padding = " " * max(0, self.width_drawn - len(line))
        self.width_drawn = len(line)
        self.stream.write(f"\r{line}{padding}", ending="", style_func=lambda text: text)
        self.stream.flush()

    def finish(self, written: int) -> None:
        elapsed = time.monotonic() - self.started
        self.draw(written, total=written, suffix=f" in {elapsed:.1f} s")
        self.stream.write("", style_func=lambda text: text)  # the final newline


class Command(BaseCommand):
    help = (
        "Write a project's dataset (sft, preferences, rankings or prompts) into a folder: one "
        "JSONL file per split, manifest.json and a dataset card README.md, loadable with "
        "datasets.load_dataset. Choices come from --choices-json and the options below (an "
        "option wins over the same choice in the JSON); list options are comma-separated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, metavar="SLUG", help="The project's slug.")
        parser.add_argument(
            "--kind", required=True, choices=[k.value for k in ExportKind], help="What to export."
        )
        parser.add_argument(
            "--out", required=True, metavar="DIR", help="The folder to write (empty or new)."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Write into a folder that is not empty, replacing an earlier export's files.",
        )
        parser.add_argument(
            "--choices-json",
            metavar="JSON",
            help='Choices as one JSON object, e.g. \'{"min_agreement": 0.5, "seed": 3}\'.',
        )
        choices = parser.add_argument_group("export choices")
        for name in CHOICE_NAMES:
            flag = option_name(name)
            text = CHOICE_DOCS[name].help + applies_note(name)
            if name in FLAGS:
                choices.add_argument(flag, action="store_true", default=None, help=text)
            elif name in ENUMS:
                values = [member.value for member in ENUMS[name]]
                choices.add_argument(flag, choices=values, help=text)
            elif name in FLOATS:
                choices.add_argument(flag, type=float, metavar="SHARE", help=text)
            elif name == "seed":
                choices.add_argument(flag, type=int, metavar="N", help=text)
            elif name in LISTS:
                choices.add_argument(flag, metavar="A,B,...", help=text)
            else:
                choices.add_argument(flag, metavar="YYYY-MM-DD", help=text)

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"--project: no project with the slug {options['project']!r}.")
        raw = self.raw_choices(options)
        try:
            choices = export_choices_clean(project=project, kind=options["kind"], choices=raw)
        except ValidationError as exc:
            raise CommandError(self.describe(exc)) from exc
        out_dir = self.prepare_out(Path(options["out"]), force=options["force"])

        bar = ProgressBar(self.stderr)
        manifest = export_write(
            project=project,
            kind=options["kind"],
            choices=choices,
            out_dir=out_dir,
            progress=bar,
            expected=bar.expected,
        )
        bar.finish(manifest["rows"])
        self.summarise(manifest, out_dir)

    def raw_choices(self, options: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        if options["choices_json"] is not None:
            try:
                raw = json.loads(options["choices_json"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--choices-json: not valid JSON ({exc}).") from exc
            if not isinstance(raw, dict):
                raise CommandError("--choices-json: expected a JSON object of choices.")
        for name in CHOICE_NAMES:
            if options.get(name) is not None:
                raw[name] = options[name]
        return raw

    def describe(self, exc: ValidationError) -> str:
        if not hasattr(exc, "error_dict"):
            return " ".join(exc.messages)
        lines = []
        for field, messages in exc.message_dict.items():
            # A key that is no choice at all can only have come from --choices-json.
            known = field in CHOICE_NAMES or field in ("kind", "choices")
            where = option_name(field) if known else f"--choices-json: {field!r}"
            lines += [f"{where}: {message}" for message in messages]
        return "\n".join(lines)

    def prepare_out(self, out_dir: Path, *, force: bool) -> Path:
        if out_dir.exists() and not out_dir.is_dir():
            raise CommandError(f"--out: {out_dir} is a file, not a folder.")
        if out_dir.is_dir() and any(out_dir.iterdir()):
            if not force:
                raise CommandError(
                    f"--out: {out_dir} is not empty; choose a new folder or add --force to "
                    "replace an earlier export there."
                )
            for name in DATASET_FILES:
                (out_dir / name).unlink(missing_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir

    def summarise(self, manifest: dict[str, Any], out_dir: Path) -> None:
        write = self.stdout.write
        write(
            self.style.SUCCESS(
                f"{manifest['project']}: {manifest['rows']} {manifest['kind']} rows in {out_dir}"
            )
        )
        width = max(len(name) for name in manifest["splits"])
        for name, split in manifest["splits"].items():
            write(
                f"  {name:<{width}}  {split['rows']:>9} rows  {split['file']}  "
                f"{filesizeformat(split['bytes'])}  sha256 {split['sha256']}"
            )
        files = [split["file"] for split in manifest["splits"].values()]
        write(f"Files: {', '.join([*files, 'manifest.json', 'README.md'])}")
        if manifest.get("left_out"):
            reasons = ", ".join(f"{name} {n}" for name, n in manifest["left_out"].items())
            write(f"Left out: {reasons}")
        bias = manifest.get("length_bias")
        if bias and bias.get("chosen_longer_share") is not None:
            write(
                f"Length bias: the chosen reply is the longer one in "
                f"{bias['chosen_longer_share']:.1%} of pairs of unequal length"
                f"{' (balanced)' if bias.get('balanced') else ''}."
            )
