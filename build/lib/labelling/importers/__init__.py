"""Prompt, message-tree and conversation imports: check a whole file, then store it at once.

Five formats come in:

- `jsonl`: one prompt per line, `{"prompt": "...", "lang": "en", "tags": ["..."]}` or a bare
  JSON string; each prompt becomes a pool conversation (source "prompt") with one user turn.
- `csv`: a header row with a `prompt` column and optional `lang` and `tags` (tags separated by
  commas or semicolons); the delimiter (comma, semicolon or tab) is read from the header.
- `oasst`: Open Assistant's message-tree export, one tree per line, imported whole: a
  conversation (source "import") with every human and model-written message, and a completed
  ranking set with one consensus ranking wherever two or more siblings carry a `rank`.
- `messages` and `instruction`: conversations written by people elsewhere, in the JSONL forms
  `datasets` and TRL use (`{"messages": [...]}`, `{"prompt": ..., "completion": ...}`), each
  imported as a conversation (source "import") of human-written demonstrations (dialogues.py).

Every conversation an import creates carries `meta["dataset"]`, a short name (the caller's, or
the file's stem) that exports filter and count rows by (provenance.py).

A file is taken or refused as a whole: every problem is collected with its line number before
anything is written, and nothing is stored unless there are none. Duplicates are not problems;
they are skipped and counted (prompts by normalised text against the pool and earlier lines,
trees by `message_tree_id`, conversations by their normalised turns). Prompts must fit the
project's `max_message_chars`; messages of a tree or an imported conversation are a record of
what was written and are taken whatever their length.

The modules: this one takes a file and hands it to its format's module (prompts.py for `jsonl`
and `csv`, trees.py for `oasst`, dialogues.py for `messages` and `instruction`); each of those
checks its records with reading.py, says what is wrong or what came in with report.py, and stores
through `annotations.imports`, which owns the fast bulk insert.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.template.defaultfilters import filesizeformat

from annotations.models import Project
from annotations.text import normalise
from labelling.importers.dialogues import dialogues_import
from labelling.importers.prompts import prompts_import
from labelling.importers.provenance import (
    DATASET_NAME_RULE,
    Provenance,
    dataset_name_problem,
    default_dataset_name,
)
from labelling.importers.reading import FIRST_LINE, ImportRules, decode_file
from labelling.importers.report import DIALOGUE_FORMATS, ImportProblem, ImportReport
from labelling.importers.trees import ranked_groups, trees_import

__all__ = [
    "DATASET_NAME_RULE",
    "DEFAULT_MAX_BYTES",
    "FORMATS",
    "ImportProblem",
    "ImportReport",
    "dataset_name_problem",
    "default_dataset_name",
    "detect_format",
    "import_max_bytes",
    "normalise",
    "prompt_file_import",
    "ranked_groups",
]

FORMATS = ("jsonl", "csv", "oasst", *DIALOGUE_FORMATS)
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}


def import_max_bytes() -> int:
    return int(settings.PARLEY.get("IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def prompt_file_import(
    *,
    project: Project,
    source: bytes | BinaryIO,
    filename: str = "",
    fmt: str | None = None,
    dataset: str | None = None,
    user: AbstractBaseUser | None = None,
) -> ImportReport:
    """Check the whole file, then import it in one transaction, or import nothing.

    `source` is the file's bytes or a binary file object (an upload, an open file). `dataset`
    names where the conversations came from (`meta["dataset"]`); by default the file's stem.
    The report lists every problem with its line number when the file is refused.
    """
    if fmt and fmt not in FORMATS:
        problem = ImportProblem(None, f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
        return ImportReport(format=fmt, errors=[problem])
    dataset = default_dataset_name(filename) if dataset is None else dataset
    if why := dataset_name_problem(dataset):
        return ImportReport(format=fmt or "unknown", errors=[ImportProblem(None, why, "dataset")])
    limit = import_max_bytes()
    data = source if isinstance(source, bytes) else source.read(limit + 1)
    if len(data) > limit:
        message = (
            f"the file is larger than the import limit of {filesizeformat(limit)} "
            f"({limit:,} bytes); split it into smaller files"
        )
        return ImportReport(format=fmt or "unknown", errors=[ImportProblem(None, message)])
    text, problems, bad_lines = decode_file(data)
    fmt = fmt or detect_format(filename, text)
    report = ImportReport(format=fmt, dataset=dataset, errors=problems)
    if not text.strip():
        report.errors.append(ImportProblem(None, "the file is empty"))
        return report
    rules = ImportRules.for_file(project, text)
    provenance = Provenance.for_file(
        dataset=dataset, filename=filename, fmt=fmt, user_id=user.pk if user else None
    )
    read = {"project": project, "text": text, "bad_lines": bad_lines, "rules": rules}
    if fmt == "oasst":
        trees_import(**read, provenance=provenance, report=report)
    elif fmt in DIALOGUE_FORMATS:
        dialogues_import(**read, fmt=fmt, provenance=provenance, report=report)
    else:
        prompts_import(**read, fmt=fmt, provenance=provenance, report=report)
    return report


def detect_format(filename: str, text: str) -> str:
    """The format from the file name and the first line (a CSV header may be quoted too)."""
    suffix = Path(filename).suffix.lower()
    if suffix in {".csv", ".tsv"}:
        return "csv"
    head = FIRST_LINE.match(text).group(1).strip()
    try:
        first = json.loads(head) if head.startswith(("{", '"')) else None
    except (ValueError, RecursionError):
        first = None
    if (
        isinstance(first, dict)
        and "message_tree_id" in first
        and isinstance(first.get("prompt"), dict)
    ):
        return "oasst"
    if isinstance(first, dict) and isinstance(first.get("messages"), list):
        return "messages"
    if isinstance(first, dict) and "prompt" in first and "completion" in first:
        return "instruction"
    if suffix in JSON_SUFFIXES or isinstance(first, dict | str):
        return "jsonl"
    return "csv"
