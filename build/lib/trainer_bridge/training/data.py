"""Parley export rows (DESIGN.md §5) read and checked for the stage that trains on them.

Standard library only: a bad or empty file fails the run before torch is imported. Each stage
reads one export kind: sft rows (`messages` ending in an assistant turn), preferences rows
(`prompt`, `chosen`, `rejected`) and prompts rows (`prompt`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
# Which export kind each stage trains on (the kind names of the exports app).
STAGE_EXPORT_KIND = {"sft": "sft", "rm": "preferences", "ppo": "prompts"}

Message = dict[str, str]


class DataError(ValueError):
    """A training file the stage cannot use; the message names the file, line and field."""


@dataclass(frozen=True)
class Demonstration:
    """An sft row: the conversation before the last assistant turn, and that turn's text."""

    prompt: list[Message]
    reply: str


@dataclass(frozen=True)
class Preference:
    """A preferences row: one ordered pair of replies to the same conversation."""

    prompt: list[Message]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Prompt:
    """A prompts row: a conversation that ends where the assistant should speak."""

    prompt: list[Message]


Example = Demonstration | Preference | Prompt


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path | str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL (or .jsonl.gz) file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path.name} line {number}: not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path.name} line {number}: expected a JSON object per line")
                rows.append((number, row))
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"{path.name}: cannot be read ({error})") from None
    return rows


def _messages(value: Any, where: str, field: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field '{field}' must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        at = f"{where}: field '{field}[{index}]'"
        if not isinstance(message, dict):
            raise DataError(f"{at} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"{at}.role must be one of {', '.join(ROLES)}; got {role!r}")
        if not isinstance(content, str):
            raise DataError(f"{at}.content must be a string")
        messages.append({"role": role, "content": content})
    return messages


def _prompt(value: Any, where: str, field: str = "prompt") -> list[Message]:
    messages = _messages(value, where, field)
    if messages[-1]["role"] != "user":
        raise DataError(
            f"{where}: field '{field}' must end with a user turn; got {messages[-1]['role']} last"
        )
    return messages


def _reply(value: Any, where: str, field: str) -> str:
    messages = _messages(value, where, field)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise DataError(f"{where}: field '{field}' must hold exactly one assistant message")
    return messages[0]["content"]


def parse_example(stage: str, row: dict[str, Any], where: str) -> Example:
    """The stage's example from one export row, or DataError naming the field."""
    if stage == "sft":
        messages = _messages(row.get("messages"), where, "messages")
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise DataError(
                f"{where}: field 'messages' must be a conversation that ends with an assistant "
                "turn (an sft export row)"
            )
        prompt = _prompt(messages[:-1], where, "messages")
        return Demonstration(prompt=prompt, reply=messages[-1]["content"])
    if stage == "rm":
        if "chosen" not in row or "rejected" not in row:
            raise DataError(
                f"{where}: expected 'prompt', 'chosen' and 'rejected' (a preferences export row)"
            )
        return Preference(
            prompt=_prompt(row.get("prompt"), where),
            chosen=_reply(row["chosen"], where, "chosen"),
            rejected=_reply(row["rejected"], where, "rejected"),
        )
    if stage == "ppo":
        if "prompt" not in row:
            raise DataError(f"{where}: expected 'prompt' (a prompts export row)")
        return Prompt(prompt=_prompt(row["prompt"], where))
    raise ValueError(f"Unknown stage {stage!r}")


def read_examples(stage: str, path: Path | str, *, split: str) -> list[Example]:
    """Every example of a split's file; DataError if one row is malformed or the file is empty."""
    path = Path(path)
    rows = read_jsonl(path)
    if not rows:
        raise DataError(
            f"the {split} file {path.name} has no rows: a {STAGE_EXPORT_KIND[stage]} export "
            "with at least one row is needed"
        )
    return [parse_example(stage, row, f"{path.name} line {number}") for number, row in rows]
