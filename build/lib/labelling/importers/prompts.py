"""Flat prompt files (JSONL and CSV): parse the prompts, store each as a pool conversation."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from django.db import transaction

from annotations.imports import (
    ImportedConversation,
    ImportedMessage,
    conversations_import_bulk,
    conversations_import_lock,
)
from annotations.models import Conversation, Message, Project
from annotations.selectors import prompt_pool
from annotations.text import normalise
from labelling.importers.provenance import Provenance
from labelling.importers.reading import (
    FIRST_LINE,
    ImportRules,
    file_lines,
    json_kind,
    lang_field,
    load_json_line,
    tags_field,
    text_field,
)
from labelling.importers.report import ImportProblem, ImportReport

USER = Message.Role.USER


def prompts_import(
    *,
    project: Project,
    text: str,
    bad_lines: set[int],
    rules: ImportRules,
    fmt: str,
    provenance: Provenance,
    report: ImportReport,
) -> None:
    """Check every prompt of a JSONL or CSV file (`fmt`); store them if none has a problem."""
    parse = _parse_csv if fmt == "csv" else _parse_jsonl
    prompts = parse(text, bad_lines, rules, report.errors)
    if report.ok and not prompts:
        report.errors.append(ImportProblem(None, "the file holds no prompts"))
    if report.ok:
        _store_prompts(project, prompts, provenance, report)


@dataclass(slots=True)
class _Prompt:
    line: int
    text: str
    lang: str
    tags: list[str]


def _prompt_from(record: dict, line: int, rules: ImportRules, problems: list) -> _Prompt | None:
    before = len(problems)
    text = text_field(record, "prompt", line, problems, rules)
    if text is not None:
        text = text.strip()
        if len(text) > rules.max_chars:
            message = f"{len(text)} characters; the project's limit is {rules.max_chars}"
            problems.append(ImportProblem(line, message, "prompt"))
    lang = lang_field(record, line, problems, rules)
    tags = tags_field(record, line, problems, rules)
    if len(problems) > before:
        return None
    return _Prompt(line=line, text=text, lang=lang, tags=tags)


def _parse_jsonl(
    text: str, bad_lines: set[int], rules: ImportRules, problems: list
) -> list[_Prompt]:
    prompts = []
    for number, line in file_lines(text, bad_lines):
        value, ok = load_json_line(line, number, problems)
        if not ok:
            continue
        if isinstance(value, str):
            value = {"prompt": value}
        elif not isinstance(value, dict):
            problems.append(
                ImportProblem(
                    number,
                    "expected an object with a 'prompt' field or a JSON string, "
                    f"got {json_kind(value)}",
                )
            )
            continue
        if prompt := _prompt_from(value, number, rules, problems):
            prompts.append(prompt)
    return prompts


def _parse_csv(text: str, bad_lines: set[int], rules: ImportRules, problems: list) -> list[_Prompt]:
    head = FIRST_LINE.match(text).group(1)
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","  # a single column has nothing to sniff
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    columns: dict[str, int] | None = None
    width = 0
    prompts = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if start not in bad_lines:
                problems.append(ImportProblem(start, f"malformed CSV: {exc}"))
            if reader.line_num < start:
                break  # the reader did not move on: nothing more can be read
            continue
        if not row or start in bad_lines:
            continue
        if columns is None:
            columns = {name.strip().casefold(): i for i, name in enumerate(row)}
            width = len(row)
            if "prompt" not in columns:
                found = ", ".join(name.strip() for name in row)
                problems.append(
                    ImportProblem(start, f"no 'prompt' column in the header (found: {found})")
                )
                return []
            continue
        if len(row) != width:
            problems.append(ImportProblem(start, f"{len(row)} fields where the header has {width}"))
            continue
        record = {"prompt": row[columns["prompt"]]}
        if "lang" in columns:
            record["lang"] = row[columns["lang"]]
        if "tags" in columns:
            record["tags"] = [t for t in re.split(r"[,;]", row[columns["tags"]]) if t.strip()]
        if prompt := _prompt_from(record, start, rules, problems):
            prompts.append(prompt)
    if columns is None:
        problems.append(ImportProblem(None, "no header row with a 'prompt' column"))
    return prompts


def _store_prompts(
    project: Project, prompts: list[_Prompt], provenance: Provenance, report: ImportReport
) -> None:
    with transaction.atomic():
        conversations_import_lock(project=project)
        # Existing pool prompts count as duplicates whatever their state (a prompt a lead
        # removed after a report stays removed when the same file comes in again).
        seen = {
            normalise(text)
            for text in prompt_pool(project=project).values_list("text", flat=True).iterator()
        }
        fresh = []
        for prompt in prompts:
            key = normalise(prompt.text)
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            fresh.append(prompt)
        conversations_import_bulk(
            project=project,
            source=Conversation.Source.PROMPT,
            # Built one by one as they are stored, not held in a list (see the service), with
            # positional arguments: this runs once per prompt of a file of 100,000.
            conversations=(
                ImportedConversation(
                    (ImportedMessage(USER, p.text, p.lang),),
                    "",
                    provenance.meta(p.line, {"tags": p.tags}),
                )
                for p in fresh
            ),
        )
    report.imported = report.conversations = report.messages = len(fresh)
