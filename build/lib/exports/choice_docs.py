"""What each export choice means, in words: one label and help text per ExportChoices field,
shown by the export form, the API schema and `export_dataset --help` alike."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from exports.choices import KIND_ONLY, ExportChoices, ExportKind


class ChoiceDoc(NamedTuple):
    label: str
    help: str


CHOICE_DOCS: dict[str, ChoiceDoc] = {
    "since": ChoiceDoc(
        "From (date)",
        "First day kept, inclusive (UTC), on the row's anchor: the reply of an sft row, the "
        "ranking set of preferences and rankings, the prompt of prompts.",
    ),
    "until": ChoiceDoc("Until (date)", "Last day kept, inclusive (UTC)."),
    "languages": ChoiceDoc(
        "Languages", "Language codes to keep, comma-separated (e.g. en, de); empty keeps all."
    ),
    "model_versions": ChoiceDoc(
        "Model versions",
        "Keep only candidates written by these model versions, comma-separated; 'human' stands "
        "for replies people wrote. Empty keeps every candidate.",
    ),
    "min_agreement": ChoiceDoc(
        "Minimum agreement",
        "Keep only ranking sets whose trainers agree at least this much (0 to 1); empty keeps "
        "every set.",
    ),
    "exclude_annotators": ChoiceDoc(
        "Exclude annotators",
        "Usernames or pseudonyms whose rankings and demonstrations are left out, comma-separated.",
    ),
    "exclude_flags": ChoiceDoc(
        "Exclude flags",
        "Leave out replies that carry any of these flags (from a label or a ranking).",
    ),
    "pairs_from": ChoiceDoc(
        "Pairs from",
        "consensus: one row per pair of the set's consensus order; annotator: one row per pair "
        "of each trainer's own ranking.",
    ),
    "pair_strategy": ChoiceDoc(
        "Pair strategy",
        "all: every ordered pair, K(K-1)/2 per set; best_vs_rest: the best reply against each "
        "other one; adjacent: neighbours in the order only.",
    ),
    "ties": ChoiceDoc(
        "Ties", "skip: tied replies make no pair; keep: one row per tied pair, with margin 0."
    ),
    "include_rewrites": ChoiceDoc(
        "Include rewrites",
        "Add a trainer's rewrite as chosen against each candidate of its set (margin 1).",
    ),
    "length_balanced": ChoiceDoc(
        "Length balanced",
        "Drop pairs until the chosen reply is the longer one in half of the pairs, so a reward "
        "model cannot learn 'longer is better' (needs ties skipped).",
    ),
    "include_incomplete": ChoiceDoc(
        "Include incomplete sets", "Also take sets still collecting rankings."
    ),
    "include_cancelled": ChoiceDoc(
        "Include cancelled sets", "Also take sets that were cancelled but have rankings."
    ),
    "allow_model_turns": ChoiceDoc(
        "Allow model turns",
        "Keep conversations with a model-written assistant turn before the human reply.",
    ),
    "best_path_only": ChoiceDoc(
        "Best path only",
        "Leave out threads that pass through a reply ranked below the top of its set.",
    ),
    "sources": ChoiceDoc(
        "Sources",
        "Keep only these sources, comma-separated: an import's dataset name (e.g. oasst) or "
        "how a conversation came in (demonstration, api, prompt, import). Empty keeps all.",
    ),
    "exclude_sources": ChoiceDoc("Exclude sources", "Sources to leave out, comma-separated."),
    "validation": ChoiceDoc(
        "Validation share",
        "Share of conversations in the validation split (0 to 1, e.g. 0.05); splits are made "
        "by conversation, so no prompt is on both sides.",
    ),
    "test": ChoiceDoc("Test share", "Share of conversations in the test split (0 for none)."),
    "seed": ChoiceDoc(
        "Split seed", "The same seed on the same data gives the same splits, byte for byte."
    ),
    "gzip": ChoiceDoc("Gzip", "Write .jsonl.gz files instead of .jsonl."),
}


def kinds_of(name: str) -> frozenset[ExportKind]:
    """The export kinds a choice applies to (every kind unless KIND_ONLY narrows it)."""
    return KIND_ONLY.get(name, frozenset(ExportKind))


def applies_note(name: str) -> str:
    """ " (preferences, rankings only)" for a kind-specific choice, "" for the others."""
    kinds = kinds_of(name)
    if kinds == frozenset(ExportKind):
        return ""
    return f" ({', '.join(sorted(k.value for k in kinds))} only)"


CHOICE_NAMES = tuple(f.name for f in dataclasses.fields(ExportChoices))
if set(CHOICE_NAMES) != set(CHOICE_DOCS):  # pragma: no cover - caught by any import in tests
    raise RuntimeError(f"Export choices without words: {set(CHOICE_NAMES) ^ set(CHOICE_DOCS)}")

__all__ = ["CHOICE_DOCS", "CHOICE_NAMES", "ChoiceDoc", "applies_note", "kinds_of"]
