"""The part of a project's guidelines that concerns one kind of task.

Guidelines are one Markdown text. A section whose heading names a kind of task ("When ranking
replies", "Writing demonstrations") belongs to that kind; the part for a kind is the text without
the sections that belong only to other kinds. Pure text work: no Django.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words in a heading that say which kind of task its section is about.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "demonstration": ("demonstration", "demonstrations", "write", "writing", "written"),
    "ranking": ("rank", "ranks", "ranking", "rankings", "compare", "comparing", "comparison"),
}
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class GuidelinesPart:
    text: str  # the Markdown for the kind
    trimmed: bool  # True when sections for other kinds were left out


def heading_kinds(heading: str) -> set[str]:
    """The kinds a heading names."""
    words = set(WORD.findall(heading.lower()))
    return {kind for kind, names in KIND_WORDS.items() if words & set(names)}


def guidelines_for_kind(text: str, kind: str) -> GuidelinesPart:
    """`text` without the sections (and their subsections) about other kinds only."""
    kept: list[str] = []
    skipping_level: int | None = None  # the level of the heading whose section is left out
    in_fence = False
    trimmed = False
    for line in (text or "").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            level = len(match[1])
            kinds = heading_kinds(match[2])
            # A section ends at the next heading of its level or above; a subsection about
            # this kind is kept even inside a section about another one.
            if skipping_level is not None and (level <= skipping_level or kind in kinds):
                skipping_level = None
            if skipping_level is None and kinds and kind not in kinds:
                skipping_level = level
                trimmed = True
        if skipping_level is None:
            kept.append(line)
    return GuidelinesPart(text="\n".join(kept).strip(), trimmed=trimmed)
