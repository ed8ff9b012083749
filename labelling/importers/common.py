"""What every import format shares: problems, the report, per-file rules, reading, field checks."""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from annotations.models import Message, Project
from annotations.text import json_problem, text_problem

LANG_MAX = Message._meta.get_field("lang").max_length
FIRST_LINE = re.compile(r"\s*(.*)")
RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
# Whole human-written conversations, stored as imported demonstrations (see dialogues.py).
DIALOGUE_FORMATS = ("messages", "instruction")
# Conversation.meta["dataset"]: the short name an export filters and counts imported rows by.
DATASET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATASET_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-'"


@dataclass(frozen=True)
class ImportProblem:
    """Why a file was refused: where (line, field) and what."""

    line: int | None
    message: str
    field: str | None = None

    def __str__(self) -> str:
        # A problem with an option (a field, no line) is not a problem of the file's content.
        parts = [f"line {self.line}"] if self.line else [] if self.field else ["file"]
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class ImportReport:
    format: str
    dataset: str = ""
    imported: int = 0  # prompts, trees for oasst, conversations for the dialogue formats
    duplicates: int = 0
    conversations: int = 0
    messages: int = 0
    ranking_sets: int = 0
    deleted: int = 0  # oasst messages skipped as deleted (with their replies)
    errors: list[ImportProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def unit(self) -> str:
        return self._noun + "s"

    @property
    def _noun(self) -> str:
        if self.format == "oasst":
            return "tree"
        return "conversation" if self.format in DIALOGUE_FORMATS else "prompt"

    def summary(self) -> str:
        if self.errors:
            problems = _count(len(self.errors), "problem")
            return f"The file was refused with {problems}; nothing was imported."
        text = (
            f"Imported {_count(self.imported, self._noun)} "
            f"({_count(self.duplicates, 'duplicate')} skipped)"
        )
        if self.format in DIALOGUE_FORMATS:
            text += f": {_count(self.messages, 'message')}"
        if self.format == "oasst":
            text += (
                f": {_count(self.conversations, 'conversation')}, "
                f"{_count(self.messages, 'message')}, {_count(self.ranking_sets, 'ranking set')}; "
                f"{_count(self.deleted, 'deleted message')} left out"
            )
        return text + "."


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class _Rules:
    """What every line is checked against, worked out once per file."""

    default_lang: str
    max_chars: int
    max_turns: int
    # A string can only hold a NUL or an unpaired surrogate through a raw NUL or a \u escape
    # of one, so a file with neither skips the per-string check.
    check_strings: bool

    @classmethod
    def for_file(cls, project: Project, text: str) -> _Rules:
        return cls(
            default_lang=(project.languages or ["en"])[0],
            max_chars=project.max_message_chars,
            max_turns=project.max_turns,
            check_strings="\x00" in text or bool(RISKY_ESCAPE.search(text)),
        )

    def unstorable(self, text: str) -> str | None:
        return _unstorable(text) if self.check_strings else None


def dataset_name_problem(name: str) -> str | None:
    """Why `name` cannot tag an import's conversations as their dataset, if it cannot."""
    if isinstance(name, str) and DATASET_NAME.fullmatch(name):
        return None
    return f"expected {DATASET_NAME_RULE}, got {name!r}"


def default_dataset_name(filename: str) -> str:
    """The file's stem made into a dataset name: `dolly.jsonl` -> `dolly`, `my data.csv` ->
    `my-data`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).stem).strip("-.")
    return stem[:64].rstrip("-.") or "import"


# --- Reading --------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, list[ImportProblem], set[int]]:
    """The text, a problem for every line that is not UTF-8, and those lines' numbers."""
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[offset:]
    try:
        return body.decode("utf-8"), [], set()
    except UnicodeDecodeError:
        pass
    # Only on failure: find every bad line. A newline byte never occurs inside a UTF-8
    # sequence, so decoding line by line finds exactly the broken ones.
    problems, bad = [], set()
    for number, raw in enumerate(body.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                ImportProblem(
                    number,
                    f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of "
                    f"the line (offset {offset + exc.start} in the file); save the file as UTF-8",
                )
            )
            bad.add(number)
        offset += len(raw) + 1
    return body.decode("utf-8", "replace"), problems, bad


def _lines(text: str, bad_lines: set[int]):
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks.
    for number, line in enumerate(text.split("\n"), 1):
        if number not in bad_lines and line.strip():
            yield number, line


def _load_json(line: str, number: int, problems: list[ImportProblem]):
    try:
        return json.loads(line), True
    except json.JSONDecodeError as exc:
        problems.append(ImportProblem(number, f"malformed JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        problems.append(ImportProblem(number, "malformed JSON: nested too deeply"))
    return None, False


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a value")


def _unstorable(text: str) -> str | None:
    """Why the database would refuse this string, if it would."""
    return text_problem(text)


def _storable(value) -> bool:
    """Whether a JSON value can go into a JSON column on every database we run on."""
    return json_problem(value, "") is None


def _text_field(
    record: dict, key: str, line: int, problems: list, rules: _Rules, *, path: str = ""
) -> str | None:
    name = path + key
    if key not in record:
        problems.append(ImportProblem(line, "missing", name))
        return None
    value = record[key]
    if not isinstance(value, str):
        problems.append(ImportProblem(line, f"expected a string, got {_kind(value)}", name))
        return None
    if not value.strip():
        problems.append(ImportProblem(line, "empty text", name))
        return None
    if why := rules.unstorable(value):
        problems.append(ImportProblem(line, why, name))
        return None
    return value


def _lang_field(record: dict, line: int, problems: list, rules: _Rules, *, path: str = "") -> str:
    value = record.get("lang")
    if value is None or value == "":
        return rules.default_lang
    if not isinstance(value, str) or len(value) > LANG_MAX or rules.unstorable(value):
        problems.append(
            ImportProblem(
                line, f"expected a language code of at most {LANG_MAX} characters", path + "lang"
            )
        )
        return rules.default_lang
    return value.strip()


def _tags_field(record: dict, line: int, problems: list, rules: _Rules) -> list[str]:
    tags = record.get("tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, str) and not rules.unstorable(t) for t in tags
    ):
        problems.append(ImportProblem(line, "expected a list of strings", "tags"))
        return []
    return [t.strip() for t in tags if t.strip()]
