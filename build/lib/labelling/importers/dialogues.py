"""Conversations people wrote elsewhere: check each line's turns, store each as a demonstration.

Two JSONL forms come in, the ones `datasets` and TRL use for supervised fine-tuning:

- `messages`: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`.
- `instruction`: `{"prompt": ..., "completion": ...}`, each a string (one user turn, one
  assistant turn) or a list of messages (TRL's conversational prompt-completion form: the
  prompt's turns, then one assistant message).

Both take an optional `system` string (a system prompt for turns that do not start with one)
and, like JSONL prompts, optional `lang` and `tags`; other keys of a line are ignored. A message
holds `role` and `content` and nothing else: any other key (`name`, `weight`, `tool_calls`) is a
problem, not dropped in silence, because each of them changes what the turn means.

The turns are an optional system turn, then user and assistant turns in alternation, ending with
an assistant turn; at most the project's `max_turns`. Texts are taken whatever their length (a
record of what was written, like a tree's messages). Each line becomes a conversation (source
"import") of human-written messages: no author, not synthetic. Its external id is a digest of
the normalised turns, so the same conversation again, in the file or already in the project, is
a duplicate: skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.db import transaction

from annotations.imports import (
    ImportedConversation,
    ImportedMessage,
    conversations_import_bulk,
    conversations_import_lock,
)
from annotations.models import Conversation, Message, Project
from annotations.selectors import conversation_external_ids
from annotations.services import NEXT_ROLES, a_turn
from annotations.text import normalise
from labelling.importers.provenance import Provenance
from labelling.importers.reading import (
    ImportRules,
    file_lines,
    json_kind,
    lang_field,
    load_json_line,
    tags_field,
    text_field,
)
from labelling.importers.report import ImportProblem, ImportReport

ROLES = (Message.Role.SYSTEM, Message.Role.USER, Message.Role.ASSISTANT)
MESSAGE_KEYS = ("role", "content")
# Conversation.external_id of an imported dialogue: this prefix and the SHA-256 of its turns.
KEY_PREFIX = "sha256:"


@dataclass(frozen=True)
class _Turn:
    role: str
    text: str
    field: str  # where problems with its role point: "messages[2].role", or "prompt"


@dataclass
class _Dialogue:
    line: int
    turns: list[_Turn]
    lang: str
    tags: list[str]

    @property
    def key(self) -> str:
        """The same for two dialogues whose turns differ only in spacing or case."""
        turns = [[turn.role, normalise(turn.text)] for turn in self.turns]
        return KEY_PREFIX + hashlib.sha256(json.dumps(turns).encode()).hexdigest()


def dialogues_import(
    *,
    project: Project,
    text: str,
    bad_lines: set[int],
    rules: ImportRules,
    fmt: str,
    provenance: Provenance,
    report: ImportReport,
) -> None:
    """Check every conversation of a `messages` or `instruction` file (`fmt`); store them if
    none has a problem."""
    dialogues = _parse_dialogues(text, bad_lines, rules, fmt, report.errors)
    if report.ok and not dialogues:
        report.errors.append(ImportProblem(None, "the file holds no conversations"))
    if report.ok:
        _store_dialogues(project, dialogues, provenance, report)


def _parse_dialogues(
    text: str, bad_lines: set[int], rules: ImportRules, fmt: str, problems: list[ImportProblem]
) -> list[_Dialogue]:
    read = _messages_turns if fmt == "messages" else _instruction_turns
    shape = "a 'messages' array" if fmt == "messages" else "'prompt' and 'completion' fields"
    dialogues = []
    for number, line in file_lines(text, bad_lines):
        value, ok = load_json_line(line, number, problems)
        if not ok:
            continue
        if not isinstance(value, dict):
            problems.append(
                ImportProblem(number, f"expected an object with {shape}, got {json_kind(value)}")
            )
            continue
        before = len(problems)
        turns = read(value, number, rules, problems)
        lang = lang_field(value, number, problems, rules)
        tags = tags_field(value, number, problems, rules)
        if len(problems) == before:
            dialogues.append(_Dialogue(line=number, turns=turns, lang=lang, tags=tags))
    return dialogues


def _messages_turns(record: dict, line: int, rules: ImportRules, problems: list) -> list[_Turn]:
    before = len(problems)
    system = _system_turn(record, line, rules, problems)
    messages = _message_list(record, "messages", line, rules, problems)
    if len(problems) > before:
        return []
    if system and messages and messages[0].role == Message.Role.SYSTEM:
        problems.append(
            ImportProblem(line, "the messages already start with a system message", "system")
        )
        return []
    turns = [system, *messages] if system else messages
    if not _in_order(turns, line, problems):
        return []
    if not turns:
        problems.append(
            ImportProblem(line, "empty; expected a user turn and an assistant turn", "messages")
        )
    elif turns[-1].role != Message.Role.ASSISTANT:
        problems.append(
            ImportProblem(
                line,
                f"the conversation ends with {a_turn(turns[-1].role)}; "
                "it must end with an assistant turn",
                "messages",
            )
        )
    elif len(turns) > rules.max_turns:
        problems.append(ImportProblem(line, _too_many(turns, rules), "messages"))
    return turns


def _instruction_turns(record: dict, line: int, rules: ImportRules, problems: list) -> list[_Turn]:
    before = len(problems)
    system = _system_turn(record, line, rules, problems)
    prompt = _part(record, "prompt", Message.Role.USER, line, rules, problems)
    completion = _part(record, "completion", Message.Role.ASSISTANT, line, rules, problems)
    if len(problems) > before:
        return []
    if system and prompt and prompt[0].role == Message.Role.SYSTEM:
        problems.append(
            ImportProblem(line, "the prompt already starts with a system message", "system")
        )
        return []
    asked = [system, *prompt] if system else prompt
    if not _in_order(asked, line, problems):
        return []
    if not prompt:
        problems.append(ImportProblem(line, "empty; expected at least a user turn", "prompt"))
    elif asked[-1].role != Message.Role.USER:
        problems.append(
            ImportProblem(
                line,
                f"the prompt ends with {a_turn(asked[-1].role)}; it must end with a user turn",
                "prompt",
            )
        )
    if len(completion) != 1:
        problems.append(
            ImportProblem(
                line, f"expected one assistant message, got {len(completion)}", "completion"
            )
        )
    elif completion[0].role != Message.Role.ASSISTANT:
        problems.append(
            ImportProblem(
                line, f"expected assistant, got {completion[0].role}", completion[0].field
            )
        )
    if len(problems) > before:
        return []
    turns = asked + completion
    if len(turns) > rules.max_turns:
        problems.append(ImportProblem(line, _too_many(turns, rules), "prompt"))
    return turns


def _system_turn(record: dict, line: int, rules: ImportRules, problems: list) -> _Turn | None:
    # Absent, null or "" all mean no system prompt (datasets often write an empty one).
    if record.get("system") in (None, ""):
        return None
    text = text_field(record, "system", line, problems, rules)
    return None if text is None else _Turn(Message.Role.SYSTEM, text.strip(), "system")


def _part(
    record: dict, name: str, role: str, line: int, rules: ImportRules, problems: list
) -> list[_Turn]:
    """An instruction's prompt or completion: a string is one turn of `role`."""
    value = record.get(name)
    if isinstance(value, list):
        return _message_list(record, name, line, rules, problems)
    if name in record and not isinstance(value, str):
        why = f"expected a string or an array of messages, got {json_kind(value)}"
        problems.append(ImportProblem(line, why, name))
        return []
    text = text_field(record, name, line, problems, rules)
    return [] if text is None else [_Turn(role, text.strip(), name)]


def _message_list(record: dict, name: str, line: int, rules: ImportRules, problems: list) -> list:
    """The turns of `record[name]`, an array of messages; every problem of each message."""
    if name not in record:
        problems.append(ImportProblem(line, "missing", name))
        return []
    items = record[name]
    if not isinstance(items, list):
        why = f"expected an array of messages, got {json_kind(items)}"
        problems.append(ImportProblem(line, why, name))
        return []
    turns = []
    for index, item in enumerate(items):
        path = f"{name}[{index}]"
        if not isinstance(item, dict):
            why = f"expected an object with 'role' and 'content', got {json_kind(item)}"
            problems.append(ImportProblem(line, why, path))
            continue
        for key in item:
            if key not in MESSAGE_KEYS:
                why = "not supported; a message holds only 'role' and 'content'"
                problems.append(ImportProblem(line, why, f"{path}.{key}"))
        role = item.get("role")
        if role not in ROLES:
            why = (
                f"expected system, user or assistant, got {_shown(role)}"
                if "role" in item
                else "missing"
            )
            problems.append(ImportProblem(line, why, f"{path}.role"))
            role = None
        text = text_field(item, "content", line, problems, rules, path=f"{path}.")
        if role is not None and text is not None:
            turns.append(_Turn(role, text.strip(), f"{path}.role"))
    return turns


def _in_order(turns: list[_Turn], line: int, problems: list) -> bool:
    """Whether the roles alternate as a dialogue's must; if not, a problem at the first wrong."""
    previous = None
    for turn in turns:
        allowed = NEXT_ROLES[previous]
        if turn.role not in allowed:
            after = f"after {a_turn(previous)}" if previous else "as the first turn"
            why = f"expected {' or '.join(sorted(allowed))} {after}, got {turn.role}"
            if turn.role == Message.Role.SYSTEM:
                why += " (a system turn can only come first)"
            problems.append(ImportProblem(line, why, turn.field))
            return False
        previous = turn.role
    return True


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else json_kind(value)


def _too_many(turns: list[_Turn], rules: ImportRules) -> str:
    return f"{len(turns)} turns; the project's limit is {rules.max_turns}"


def _store_dialogues(
    project: Project, dialogues: list[_Dialogue], provenance: Provenance, report: ImportReport
) -> None:
    with transaction.atomic():
        conversations_import_lock(project=project)
        seen = set(conversation_external_ids(project=project, prefix=KEY_PREFIX).iterator())
        fresh = []
        for dialogue in dialogues:
            key = dialogue.key
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            fresh.append((key, dialogue))
        counts = conversations_import_bulk(
            project=project,
            source=Conversation.Source.IMPORT,
            conversations=[
                ImportedConversation(
                    messages=[
                        ImportedMessage(
                            role=turn.role,
                            text=turn.text,
                            lang=dialogue.lang,
                            parent=depth - 1 if depth else None,
                        )
                        for depth, turn in enumerate(dialogue.turns)
                    ],
                    external_id=key,
                    meta=provenance.meta(dialogue.line, {"tags": dialogue.tags}),
                )
                for key, dialogue in fresh
            ],
        )
    report.imported = report.conversations = counts.conversations
    report.messages += counts.messages
