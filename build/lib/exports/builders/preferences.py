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
from operator import gt, lt

from exports.builders.common import ExportContext, Row, dumps, iso
from exports.builders.sets import ExportSet, Order, candidate_counts, export_sets
from exports.choices import PairsFrom, PairStrategy, Ties


def expected_rows(ctx: ExportContext) -> int:
    """Pairs of the kept sets' untied orders under the pair strategy (ties kept, rewrites and
    left-out replies make the real count differ; progress is capped at 100 %)."""
    per_ranking = ctx.choices.pairs_from == PairsFrom.ANNOTATOR
    all_pairs = ctx.choices.pair_strategy == PairStrategy.ALL
    return sum(
        (k * (k - 1) // 2 if all_pairs else max(0, k - 1))
        * (max(1, rankings) if per_ranking else 1)
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


class Margins:
    """margin(a, b) of a set's kept candidates (see the module's docstring).

    Each candidate gets the tuple of its levels in the set's orders (None where an order
    leaves it out); a margin compares two such tuples.
    """

    def __init__(self, export_set: ExportSet) -> None:
        self.index = index = {c.message_id: i for i, c in enumerate(export_set.candidates)}
        levels = []
        for order in export_set.orders():
            level: list[int | None] = [None] * len(index)
            for position, group in enumerate(order):
                for candidate in group:
                    level[index[candidate]] = position
            levels.append(level)
        self.columns = list(zip(*levels, strict=True)) if levels else [()] * len(index)
        # Every order ranks every candidate: each pair was seen by all of them.
        self.complete = all(None not in level for level in levels)
        self.n = len(levels)

    def __call__(self, a: int, b: int) -> float:
        x, y = self.columns[self.index[a]], self.columns[self.index[b]]
        if self.complete:
            votes = sum(map(lt, x, y)) - sum(map(gt, x, y))
            seen = self.n
        else:
            pairs = [(p, q) for p, q in zip(x, y, strict=True) if p is not None and q is not None]
            votes = sum(p < q for p, q in pairs) - sum(p > q for p, q in pairs)
            seen = len(pairs)
        return round(votes / seen, 6) if votes else 0.0


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
    """Rows set by set. A set's lines go out together as one Row (one conversation, so one
    split); with `length_balanced` every pair is a Row of its own, as the balancing needs."""
    choices = ctx.choices
    pieces = _Pieces(ctx)
    per_annotator = choices.pairs_from == PairsFrom.ANNOTATOR
    one_by_one = choices.length_balanced
    for export_set, threads in export_sets(ctx):
        pairs = _SetPairs(export_set, threads.messages_json(export_set.context_id), pieces)
        if per_annotator:
            for ranking in export_set.rankings:
                pairs.add(ranking.order, choices, "annotator", pieces.author(ranking.annotator_id))
        else:
            pairs.add(export_set.consensus, choices, "consensus", "null")
        if choices.include_rewrites:
            for ranking in export_set.rankings:
                if ranking.rewrite_id is not None and ranking.rewrite_text is not None:
                    pairs.add_rewrite(ranking)
        if not pairs.lines:
            continue
        conversation_id = export_set.conversation_id
        if one_by_one:
            for line, sign in zip(pairs.lines, pairs.signs, strict=True):
                yield Row(conversation_id, line, "", 1, sign > 0, sign < 0)
        else:
            signs = pairs.signs
            yield Row(
                conversation_id,
                "\n".join(pairs.lines),
                "",
                len(signs),
                signs.count(1),
                signs.count(-1),
            )


class _SetPairs:
    """The lines of one set: every piece of JSON that recurs across its pairs is made once."""

    def __init__(self, export_set: ExportSet, prompt: str, pieces: _Pieces) -> None:
        self.set = export_set
        self.pieces = pieces
        self.lines: list[str] = []
        self.signs: list[int] = []  # +1 chosen longer, -1 shorter, 0 the same length
        self.head = '{"prompt":' + prompt + ',"chosen":'
        self.reply: dict[int, str] = {}
        # Per candidate, its meta members as JSON text, once as chosen and once as rejected.
        self.as_chosen: dict[int, str] = {}
        self.as_rejected: dict[int, str] = {}
        self.length: dict[int, int] = {}
        flags = export_set.flags
        for c in export_set.candidates:
            pk = c.message_id
            self.reply[pk] = '[{"role":"assistant","content":' + c.content + "}]"
            self.length[pk] = c.length
            chosen, rejected = pieces.sides(
                c.author_model_id, c.author_user_id, tuple(flags.get(pk, ())) if flags else ()
            )
            self.as_chosen[pk] = f'"chosen_id":{pk}{chosen}'
            self.as_rejected[pk] = f'"rejected_id":{pk}{rejected}'
        self.margin = Margins(export_set)
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

    def _extend(self, pairs: list[tuple[int, int, float]], source: str, annotator: str) -> None:
        head, group, tail = self.head, self.group, self.tail
        reply, as_chosen, as_rejected, length = (
            self.reply,
            self.as_chosen,
            self.as_rejected,
            self.length,
        )
        middle = f',"pair_source":"{source}","annotator":{annotator},'
        self.lines += [
            f'{head}{reply[a]},"rejected":{reply[b]},"meta":{group}{margin!r}{middle}'
            f"{as_chosen[a]},{as_rejected[b]},{tail}"
            for a, b, margin in pairs
        ]
        self.signs += [(length[a] > length[b]) - (length[a] < length[b]) for a, b, _ in pairs]

    def add(self, order: Order, choices, source: str, annotator: str) -> None:
        margin = self.margin
        pairs = [(a, b, margin(a, b)) for a, b in ordered_pairs(order, choices.pair_strategy)]
        if choices.ties == Ties.KEEP:
            positions = {c.message_id: i for i, c in enumerate(self.set.candidates)}
            # Best against the rest pairs only the best group's members with each other.
            tied = order[:1] if choices.pair_strategy == PairStrategy.BEST_VS_REST else order
            pairs += [(a, b, 0.0) for a, b in tied_pairs(tied, positions)]
        self._extend(pairs, source, annotator)

    def add_rewrite(self, ranking) -> None:
        """The trainer's rewrite preferred over every candidate (margin 1: see the module)."""
        rewrite = ranking.rewrite_id
        self.reply[rewrite] = _reply(ranking.rewrite_text)
        self.length[rewrite] = len(ranking.rewrite_text)
        chosen, _ = self.pieces.sides(None, ranking.annotator_id, ())
        self.as_chosen[rewrite] = f'"chosen_id":{rewrite}{chosen}'
        pairs = [(rewrite, c.message_id, 1.0) for c in self.set.candidates]
        self._extend(pairs, "rewrite", self.pieces.author(ranking.annotator_id))
