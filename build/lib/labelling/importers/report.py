"""What an import tells its caller: every problem that refused the file, or what came in."""

from __future__ import annotations

from dataclasses import dataclass, field

# Whole human-written conversations, stored as imported demonstrations (see dialogues.py).
DIALOGUE_FORMATS = ("messages", "instruction")


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
