"""The `preferences` dataset: one row per ordered pair of a ranking set, prompt / chosen /
rejected, for reward models (TRL's RewardTrainer) and DPO.

`meta.margin` is the share of the set's rankings that put chosen above rejected minus the share
that put it below, over the rankings that ordered both (so it is in [-1, 1]: 1 when every
trainer agrees, 0 for a tie). Rows from a trainer's rewrite have margin 1: the one ranking that
saw the rewrite preferred it.
"""

from __future__ import annotations

from collections.abc import Iterator
from json.encoder import encode_basestring as encode_string

from exports.builders.common import ExportContext, Row, dumps, iso
from exports.builders.sets import ExportSet, Order, candidate_counts, export_sets
from exports.choices import PairsFrom, PairStrategy, Ties


def expected_rows(ctx: ExportContext) -> int:
    per_ranking = ctx.choices.pairs_from == PairsFrom.ANNOTATOR
    return sum(
        k * (k - 1) // 2 * (max(1, rankings) if per_ranking else 1)
        for k, rankings in candidate_counts(ctx)
    )


def ordered_pairs(order: Order, strategy: PairStrategy) -> Iterator[tuple[int, int]]:
    """(winner, loser) pairs of an order under a pair strategy."""
    if strategy == PairStrategy.BEST_VS_REST:
        spans = [(0, j) for j in range(1, len(order))]
    elif strategy == PairStrategy.ADJACENT:
        spans = [(i, i + 1) for i in range(len(order) - 1)]
    else:
        spans = [(i, j) for i in range(len(order)) for j in range(i + 1, len(order))]
    for i, j in spans:
        for winner in order[i]:
            for loser in order[j]:
                yield winner, loser


def tied_pairs(order: Order, positions: dict[int, int]) -> Iterator[tuple[int, int]]:
    """Pairs within a group, the earlier candidate (by position in the set) first."""
    for group in order:
        members = sorted(group, key=positions.__getitem__)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                yield a, b


def _margins(export_set: ExportSet) -> dict[tuple[int, int], float]:
    """margin[(a, b)] for every ordered pair of kept candidates (see the module's docstring)."""
    ids = [c.message_id for c in export_set.candidates]
    # Each order as the level of every candidate, by the candidate's index (None: not ranked).
    ranks = []
    for order in export_set.orders():
        level_of = {c: level for level, group in enumerate(order) for c in group}
        ranks.append([level_of.get(pk) for pk in ids])
    margins: dict[tuple[int, int], float] = {}
    for i, a in enumerate(ids):
        for j in range(i + 1, len(ids)):
            votes = seen = 0
            for rank in ranks:
                la = rank[i]
                lb = rank[j]
                if la is not None and lb is not None:
                    seen += 1
                    votes += (la < lb) - (la > lb)
            b = ids[j]
            if votes:
                margin = round(votes / seen, 6)
                margins[(a, b)] = margin
                margins[(b, a)] = -margin
            else:
                margins[(a, b)] = margins[(b, a)] = 0.0
    return margins


class _Pieces:
    """JSON text of what recurs across rows (a reply's model, author and flags as chosen and as
    rejected), encoded once per export instead of once per row."""

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx
        self._sides: dict[tuple, tuple[str, str]] = {}

    def author(self, user_id: int | None) -> str:
        return dumps(self.ctx.pseudonyms(user_id))

    def sides(self, model_id: int | None, user_id: int | None, flags: tuple) -> tuple[str, str]:
        """`_model`, `_author` and `_flags` members, once prefixed `chosen` and once `rejected`
        (each follows that side's `_id`)."""
        key = (model_id, user_id, flags)
        sides = self._sides.get(key)
        if sides is None:
            model = dumps(self.ctx.model_name(model_id))
            author = dumps(self.ctx.pseudonyms(user_id))
            names = dumps(list(flags))
            sides = self._sides[key] = tuple(
                f',"{side}_model":{model},"{side}_author":{author},"{side}_flags":{names}'
                for side in ("chosen", "rejected")
            )
        return sides


def _reply(text: str) -> str:
    return '[{"role":"assistant","content":' + encode_string(text) + "}]"


def rows(ctx: ExportContext) -> Iterator[Row]:
    choices = ctx.choices
    pieces = _Pieces(ctx)
    per_annotator = choices.pairs_from == PairsFrom.ANNOTATOR
    for export_set, threads in export_sets(ctx):
        pairs = _SetPairs(export_set, threads.messages_json(export_set.context_id), pieces)
        if per_annotator:
            for ranking in export_set.rankings:
                annotator = pieces.author(ranking.annotator_id)
                yield from pairs.rows(ranking.order, choices, "annotator", annotator)
        else:
            yield from pairs.rows(export_set.consensus, choices, "consensus", "null")
        if choices.include_rewrites:
            for ranking in export_set.rankings:
                if ranking.rewrite_id is not None and ranking.rewrite_text is not None:
                    yield from pairs.rewrite_rows(ranking)


class _SetPairs:
    """The rows of one set: every piece of JSON that recurs across its pairs is made once."""

    def __init__(self, export_set: ExportSet, prompt: str, pieces: _Pieces) -> None:
        self.set = export_set
        self.pieces = pieces
        self.head = '{"prompt":' + prompt + ',"chosen":'
        self.reply: dict[int, str] = {}
        # Per candidate, its meta members as JSON text, once as chosen and once as rejected.
        self.as_chosen: dict[int, str] = {}
        self.as_rejected: dict[int, str] = {}
        self.length: dict[int, int] = {}
        flags = export_set.flags
        for c in export_set.candidates:
            pk = c.message_id
            text = c.text
            self.reply[pk] = '[{"role":"assistant","content":' + encode_string(text) + "}]"
            self.length[pk] = len(text)
            chosen, rejected = pieces.sides(
                c.author_model_id, c.author_user_id, tuple(flags.get(pk, ())) if flags else ()
            )
            self.as_chosen[pk] = f'"chosen_id":{pk}{chosen}'
            self.as_rejected[pk] = f'"rejected_id":{pk}{rejected}'
        self.margins = _margins(export_set)
        rankings = export_set.rankings
        agreement = export_set.agreement
        imported = all(r.annotator_id is None for r in rankings)
        completed = iso(export_set.completed_at)
        completed = "null" if completed is None else f'"{completed}"'
        self.group = f'{{"group_id":{export_set.id},"margin":'
        # State names and ISO timestamps need no JSON escaping.
        self.tail = (
            f'"context_id":{export_set.context_id},'
            f'"conversation_id":{export_set.conversation_id},'
            f'"rankings":{len(rankings)},'
            f'"agreement":{"null" if agreement is None else repr(float(agreement))},'
            f'"all_bad":{sum(r.all_bad for r in rankings)},'
            f'"imported":{"true" if imported else "false"},'
            f'"state":"{export_set.state}",'
            f'"completed_at":{completed}}}}}'
        )

    def line(self, a: int, b: int, margin: float, source: str, annotator: str) -> str:
        return (
            f'{self.head}{self.reply[a]},"rejected":{self.reply[b]},"meta":{self.group}'
            f'{margin!r},"pair_source":"{source}","annotator":{annotator},'
            f"{self.as_chosen[a]},{self.as_rejected[b]},{self.tail}"
        )

    def rows(self, order: Order, choices, source: str, annotator: str) -> Iterator[Row]:
        margins = self.margins
        length = self.length
        conversation_id = self.set.conversation_id
        line = self.line
        for a, b in ordered_pairs(order, choices.pair_strategy):
            yield Row(
                conversation_id,
                line(a, b, margins[(a, b)], source, annotator),
                "",
                (length[a] > length[b]) - (length[a] < length[b]),
            )
        if choices.ties == Ties.KEEP:
            positions = {c.message_id: i for i, c in enumerate(self.set.candidates)}
            for a, b in tied_pairs(order, positions):
                yield Row(
                    conversation_id,
                    line(a, b, 0.0, source, annotator),
                    "",
                    (length[a] > length[b]) - (length[a] < length[b]),
                )

    def rewrite_rows(self, ranking) -> Iterator[Row]:
        """The trainer's rewrite preferred over every candidate (margin 1: see the module)."""
        rewrite = ranking.rewrite_id
        self.reply[rewrite] = _reply(ranking.rewrite_text)
        length = self.length
        length[rewrite] = len(ranking.rewrite_text)
        annotator = self.pieces.author(ranking.annotator_id)
        chosen, _ = self.pieces.sides(None, ranking.annotator_id, ())
        self.as_chosen[rewrite] = f'"chosen_id":{rewrite}{chosen}'
        for c in self.set.candidates:
            b = c.message_id
            yield Row(
                self.set.conversation_id,
                self.line(rewrite, b, 1.0, "rewrite", annotator),
                "",
                (length[rewrite] > length[b]) - (length[rewrite] < length[b]),
            )
