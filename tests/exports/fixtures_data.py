"""Helpers the dataset tests share: conversation trees and ranking sets built row by row, an
export written to a folder and read back, and the Open Assistant sample file."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotations.models import Label, Message, Ranking, RankingCandidate, RankingSet
from annotations.rankings import ranking_set_finalize
from annotations.services import conversation_start, message_add
from exports.pseudonyms import Pseudonyms
from exports.services import export_choices_clean, export_write
from tests.factories import MembershipFactory, ModelVersionFactory, UserFactory
from tests.shared_data import TREES

OASST_TREES = TREES
OASST_MISSING = (
    f"the Open Assistant sample {OASST_TREES} is not there (it lives outside the repository, in "
    "../shared/data or where PARLEY_SHARED_DATA points)"
)

NEXT = {"user": "assistant", "system": "user", "assistant": "user"}


def start(project, text: str = "Hello?", *, meta: dict | None = None, role: str = "user",
          source: str = "demonstration", user=None) -> Message:  # fmt: skip
    """The first message of a new conversation."""
    return conversation_start(
        project=project, text=text, role=role, source=source, meta=meta, created_by=user
    )[1]


def say(parent: Message, text: str, *, user=None, model=None, meta: dict | None = None,
        draft: Message | None = None) -> Message:  # fmt: skip
    """The next turn under `parent` (the role that follows it), by a person or a model."""
    return message_add(
        parent=parent,
        role=NEXT[parent.role],
        text=text,
        author_user=user,
        author_model=model,
        meta=meta,
        draft=draft,
        draft_edit_distance=3 if draft is not None else None,
    )


def ranking_set(
    project,
    context: Message,
    candidates: list[Message],
    rankings: list[tuple[Any, list[list[int]]]],
    *,
    state: str = RankingSet.State.COMPLETE,
    flags: dict[int, dict[int, list[str]]] | None = None,
    rewrites: dict[int, str] | None = None,
) -> RankingSet:
    """A set over `candidates` with one Ranking per (annotator, order by candidate index).

    `flags` and `rewrites` are keyed by the ranking's index in `rankings`; flags name
    candidates by index too. A complete set is finalized by the annotations service (consensus,
    agreement, tau from its rankings), as the N-th submitted ranking does.
    """
    flags, rewrites = flags or {}, rewrites or {}
    ids = [c.pk for c in candidates]
    the_set = RankingSet.objects.create(
        project=project,
        context=context,
        rankings_needed=max(1, len(rankings)),
        state=RankingSet.State.COLLECTING if state == RankingSet.State.COMPLETE else state,
    )
    for position, candidate in enumerate(candidates):
        RankingCandidate.objects.create(ranking_set=the_set, message=candidate, position=position)
    for i, (annotator, order) in enumerate(rankings):
        rewrite = None
        if i in rewrites:
            rewrite = say(context, rewrites[i], user=annotator, meta={"source": "ranking_rewrite"})
        Ranking.objects.create(
            ranking_set=the_set,
            annotator=annotator,
            order=[[ids[c] for c in group] for group in order],
            flags={str(ids[c]): names for c, names in flags.get(i, {}).items()},
            rewrite=rewrite,
            time_spent_ms=1000 + i,
        )
    RankingSet.objects.filter(pk=the_set.pk).update(rankings_count=len(rankings))
    if state == RankingSet.State.COMPLETE:
        ranking_set_finalize(ranking_set=the_set)
    the_set.refresh_from_db()
    the_set.ids = ids
    return the_set


@dataclass
class Export:
    folder: Path
    manifest: dict
    rows: dict[str, list[dict]]  # split name -> rows, in file order
    raw: dict[str, bytes]  # split name -> the file's bytes as written

    @property
    def all_rows(self) -> list[dict]:
        return [row for rows in self.rows.values() for row in rows]

    @property
    def left_out(self) -> dict[str, int]:
        return self.manifest["left_out"]


def read_split(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def export(project, kind: str, folder: Path, **choices: Any) -> Export:
    """Clean the choices as every door does, write the dataset, read every split back."""
    cleaned = export_choices_clean(project=project, kind=kind, choices=choices)
    manifest = export_write(project=project, kind=kind, choices=cleaned, out_dir=folder)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    rows, raw = {}, {}
    for name, split in manifest["splits"].items():
        path = folder / split["file"]
        raw[name] = path.read_bytes()
        rows[name] = read_split(path)
        assert len(rows[name]) == split["rows"]
    assert manifest["rows"] == sum(len(r) for r in rows.values())
    return Export(folder, manifest, rows, raw)


def pseudonym_of(project, user) -> str:
    return Pseudonyms(project.pk)(user.pk)


def one_split(**choices: Any) -> dict[str, Any]:
    """Choices that put every row in train, so a test can read rows in builder order."""
    return {"validation": 0, **choices}


# Choices that, on `varied_data`, give rows with every optional field both empty and set.
VARIED_RUNS: dict[str, list[dict[str, Any]]] = {
    "sft": [{"allow_model_turns": True}],
    "preferences": [
        {"include_rewrites": True, "ties": "keep", "include_incomplete": True},
        {"pairs_from": "annotator", "include_rewrites": True},
    ],
    "rankings": [{"include_incomplete": True}],
    "prompts": [{}],
}


def varied_data(project) -> None:
    """Rows whose optional fields are null or empty in some rows and set in others: a system
    prompt with tags, a model draft, a label, flags, a rewrite, an imported ranking, a tie, a
    model-written candidate, an incomplete set, a root with no author."""

    def member(name):
        return MembershipFactory(project=project, user=UserFactory(username=name)).user

    r1, r2, r3, w1, w2 = (member(name) for name in ("vr1", "vr2", "vr3", "vw1", "vw2"))
    model = ModelVersionFactory(name="varied-model")
    system = start(project, "Be brief.", role="system", meta={"dataset": "set", "tags": ["a"]})
    context = say(system, "Q", user=w2)
    draft = say(context, "draft", model=model)
    replies = [say(context, "human", user=w1, draft=draft), say(context, "m", model=model)]
    replies.append(say(context, "tie", user=w2))
    Label.objects.create(message=replies[0], name="quality", value=4, annotator=r1)
    say(say(replies[1], "and then?"), "after a model turn", user=w1)
    ranking_set(
        project, context, replies,
        [(r1, [[0], [1, 2]]), (r2, [[1], [0], [2]]), (None, [[2], [0], [1]])],
        flags={0: {1: ["pii", "harmful"]}}, rewrites={1: "better"},
    )  # fmt: skip
    other = start(project, "incomplete")
    ranking_set(
        project, other, [say(other, "x", model=model), say(other, "y", user=w1)],
        [(r3, [[0], [1]])], state=RankingSet.State.COLLECTING,
    )  # fmt: skip
