"""Dataset builders, one per export kind: each yields rows and estimates how many it will."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from exports.builders import preferences, prompts, rankings, sft
from exports.builders.common import ExportContext, Row
from exports.choices import ExportKind


@dataclass(frozen=True)
class Builder:
    rows: Callable[[ExportContext], Iterator[Row]]
    expected_rows: Callable[[ExportContext], int]


BUILDERS: dict[ExportKind, Builder] = {
    ExportKind.SFT: Builder(sft.rows, sft.expected_rows),
    ExportKind.PREFERENCES: Builder(preferences.rows, preferences.expected_rows),
    ExportKind.RANKINGS: Builder(rankings.rows, rankings.expected_rows),
    ExportKind.PROMPTS: Builder(prompts.rows, prompts.expected_rows),
}

__all__ = ["BUILDERS", "Builder", "ExportContext", "Row"]
