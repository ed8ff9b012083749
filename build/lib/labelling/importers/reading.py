"""Reading an import file: its text and lines, JSON values, and the checks of a record's fields.

Every format reads with these and reports what is wrong as ImportProblems, collecting all of
them before anything is stored.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass

from annotations.models import Message, Project
from annotations.text import json_problem, text_problem
from labelling.importers.report import ImportProblem

LANG_MAX = Message._meta.get_field("lang").max_length
FIRST_LINE = re.compile(r"\s*(.*)")
RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True)
class ImportRules:
    """What every line is checked against, worked out once per file."""

    default_lang: str
    max_chars: int
    max_turns: int
    # A string can only hold a NUL or an unpaired surrogate through a raw NUL or a \u escape
    # of one, so a file with neither skips the per-string check.
    check_strings: bool

    @classmethod
    def for_file(cls, project: Project, text: str) -> ImportRules:
        return cls(
            default_lang=(project.languages or ["en"])[0],
            max_chars=project.max_message_chars,
            max_turns=project.max_turns,
            check_strings="\x00" in text or bool(RISKY_ESCAPE.search(text)),
        )

    def unstorable(self, text: str) -> str | None:
        """Why the database would refuse this string, if it would."""
        return text_problem(text) if self.check_strings else None


def decode_file(data: bytes) -> tuple[str, list[ImportProblem], set[int]]:
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


def file_lines(text: str, bad_lines: set[int]):
    """(number, line) of every line with something on it, leaving out lines not UTF-8."""
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks.
    for number, line in enumerate(text.split("\n"), 1):
        if number not in bad_lines and line.strip():
            yield number, line


def load_json_line(line: str, number: int, problems: list[ImportProblem]):
    """(value, True), or (None, False) with a problem when the line is not JSON."""
    try:
        return json.loads(line), True
    except json.JSONDecodeError as exc:
        problems.append(ImportProblem(number, f"malformed JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        problems.append(ImportProblem(number, "malformed JSON: nested too deeply"))
    return None, False


def json_kind(value) -> str:
    """What a JSON value is, as a problem names it ("an object", "a number", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a value")


def is_storable(value) -> bool:
    """Whether a JSON value can go into a JSON column on every database we run on."""
    return json_problem(value, "") is None


def text_field(
    record: dict, key: str, line: int, problems: list, rules: ImportRules, *, path: str = ""
) -> str | None:
    """`record[key]` if it is a storable, non-blank string; otherwise None and a problem."""
    name = path + key
    if key not in record:
        problems.append(ImportProblem(line, "missing", name))
        return None
    value = record[key]
    if not isinstance(value, str):
        problems.append(ImportProblem(line, f"expected a string, got {json_kind(value)}", name))
        return None
    if not value.strip():
        problems.append(ImportProblem(line, "empty text", name))
        return None
    if why := rules.unstorable(value):
        problems.append(ImportProblem(line, why, name))
        return None
    return value


def lang_field(
    record: dict, line: int, problems: list, rules: ImportRules, *, path: str = ""
) -> str:
    """The record's language code, or the project's first language when it has none."""
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


def tags_field(record: dict, line: int, problems: list, rules: ImportRules) -> list[str]:
    """The record's tags, stripped, without blank ones."""
    tags = record.get("tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, str) and not rules.unstorable(t) for t in tags
    ):
        problems.append(ImportProblem(line, "expected a list of strings", "tags"))
        return []
    return [t.strip() for t in tags if t.strip()]
