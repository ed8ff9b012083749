"""The `rankings` dataset: one row per ranking set with every trainer's raw order (under a
pseudonym), the consensus, agreement and Kendall's tau, flags and "all bad" marks.

Orders and the consensus name completions by their index in `completions` (0-based), as groups
best first; a group of two or more is a tie.
"""

from __future__ import annotations

from collections.abc import Iterator

from exports.builders.common import ExportContext, Row, dumps, iso
from exports.builders.sets import Order, candidate_counts, export_sets


def expected_rows(ctx: ExportContext) -> int:
    return sum(1 for _ in candidate_counts(ctx))


def rows(ctx: ExportContext) -> Iterator[Row]:
    pseudonym = ctx.pseudonyms
    for export_set, threads in export_sets(ctx):
        index = {c.message_id: i for i, c in enumerate(export_set.candidates)}

        def as_indices(order: Order, index: dict[int, int] = index) -> list[list[int]]:
            return [sorted(index[c] for c in group) for group in order]

        rankings = [
            {
                "annotator": pseudonym(r.annotator_id),
                "imported": r.annotator_id is None,
                "order": as_indices(r.order),
                "all_bad": r.all_bad,
                "flags": [
                    sorted((r.flags or {}).get(str(c.message_id), []))
                    for c in export_set.candidates
                ],
                "rewrite": r.rewrite_text,
                "time_spent_ms": r.time_spent_ms,
            }
            for r in export_set.rankings
        ]
        # The texts come escaped as JSON already; the rest of the row is encoded here.
        completions = ",".join(
            f'[{{"role":"assistant","content":{c.content}}}]' for c in export_set.candidates
        )
        row = {
            "rankings": rankings,
            "consensus": as_indices(export_set.consensus),
            "agreement": export_set.agreement,
            "kendall_tau": export_set.kendall_tau,
            "meta": {
                "group_id": export_set.id,
                "context_id": export_set.context_id,
                "conversation_id": export_set.conversation_id,
                "completion_ids": [c.message_id for c in export_set.candidates],
                # Structs, not lists of names that may start with null (see sft.py).
                "completion_authors": [
                    {
                        "model": ctx.model_name(c.author_model_id),
                        "annotator": pseudonym(c.author_user_id),
                    }
                    for c in export_set.candidates
                ],
                "state": export_set.state,
                "created_at": iso(export_set.created_at),
                "completed_at": iso(export_set.completed_at),
            },
        }
        prompt = threads.messages_json(export_set.context_id)
        yield Row(
            export_set.conversation_id,
            f'{{"prompt":{prompt},"completions":[{completions}],{dumps(row)[1:]}',
        )
