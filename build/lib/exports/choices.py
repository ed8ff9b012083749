"""What an export holds: its kind and choices, one typed value used by the API, the pages, the CLI
and the builders alike, validated with errors that name the field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.core.exceptions import ValidationError


class ExportKind(StrEnum):
    SFT = "sft"
    PREFERENCES = "preferences"
    RANKINGS = "rankings"
    PROMPTS = "prompts"


KIND_LABELS = {
    ExportKind.SFT: "SFT: demonstrations",
    ExportKind.PREFERENCES: "Preferences: chosen / rejected pairs",
    ExportKind.RANKINGS: "Rankings: every trainer's order",
    ExportKind.PROMPTS: "Prompts: the pool for PPO",
}


class PairsFrom(StrEnum):
    CONSENSUS = "consensus"  # one row per ordered pair of the set's consensus order
    ANNOTATOR = "annotator"  # one row per ordered pair of each trainer's own ranking


class PairStrategy(StrEnum):
    ALL = "all"  # every ordered pair: K(K-1)/2 per untied order
    BEST_VS_REST = "best_vs_rest"  # the best reply(ies) against each of the others
    ADJACENT = "adjacent"  # neighbouring groups of the order only


class Ties(StrEnum):
    SKIP = "skip"
    KEEP = "keep"  # one row per tied pair, margin 0, chosen = the earlier candidate


SCHEMA_VERSION = 1
MAX_SEED = 2**31 - 1
NAME_RE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")

# Choices that only mean something for some kinds; giving one to another kind is an error.
KIND_ONLY: dict[str, frozenset[ExportKind]] = {
    "allow_model_turns": frozenset({ExportKind.SFT}),
    "best_path_only": frozenset({ExportKind.SFT}),
    "sources": frozenset({ExportKind.SFT}),
    "exclude_sources": frozenset({ExportKind.SFT}),
    "model_versions": frozenset({ExportKind.PREFERENCES, ExportKind.RANKINGS}),
    "min_agreement": frozenset({ExportKind.PREFERENCES, ExportKind.RANKINGS}),
    "pairs_from": frozenset({ExportKind.PREFERENCES}),
    "pair_strategy": frozenset({ExportKind.PREFERENCES}),
    "ties": frozenset({ExportKind.PREFERENCES}),
    "include_rewrites": frozenset({ExportKind.PREFERENCES}),
    "length_balanced": frozenset({ExportKind.PREFERENCES}),
    "include_incomplete": frozenset({ExportKind.PREFERENCES, ExportKind.RANKINGS}),
    "include_cancelled": frozenset({ExportKind.PREFERENCES, ExportKind.RANKINGS}),
    "exclude_flags": frozenset({ExportKind.SFT, ExportKind.PREFERENCES, ExportKind.RANKINGS}),
}


@dataclass(frozen=True)
class ExportChoices:
    """Every choice an export can take, with its default. `clean()` returns a checked copy.

    Dates are inclusive calendar days in UTC on the row's anchor (the assistant message of an
    sft row, the ranking set of preferences and rankings, the prompt of prompts).
    """

    since: dt.date | None = None
    until: dt.date | None = None
    languages: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()  # candidate models kept ("human" for human replies)
    min_agreement: float | None = None
    exclude_annotators: tuple[str, ...] = ()  # usernames or pseudonyms
    exclude_flags: tuple[str, ...] = ()
    pairs_from: PairsFrom = PairsFrom.CONSENSUS
    pair_strategy: PairStrategy = PairStrategy.ALL
    ties: Ties = Ties.SKIP
    include_rewrites: bool = False
    length_balanced: bool = False
    include_incomplete: bool = False
    include_cancelled: bool = False
    allow_model_turns: bool = False
    best_path_only: bool = False
    sources: tuple[str, ...] = ()  # keep only these sources (empty: all)
    exclude_sources: tuple[str, ...] = ()
    validation: float = 0.05
    test: float = 0.0
    seed: int = 0
    gzip: bool = False

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Any, *, kind: str | None = None) -> ExportChoices:
        """Build from a JSON object (API body, stored snapshot, CLI), then `clean()` it.

        Unknown keys and wrong types are ValidationErrors keyed by the field's name.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationError({"choices": "Expected an object of choices."})
        names = {f.name: f for f in dataclasses.fields(cls)}
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in names:
                errors[str(key)[:100]] = f"Unknown choice; known choices: {', '.join(names)}."
                continue
            try:
                values[key] = _coerce(key, raw, names[key])
            except ValueError as exc:
                errors[key] = str(exc)
        if errors:
            raise ValidationError(errors)
        return cls(**values).clean(kind=kind)

    def clean(self, *, kind: str | None = None) -> ExportChoices:
        errors: dict[str, str] = {}
        if self.since and self.until and self.since > self.until:
            errors["until"] = f"The range ends ({self.until}) before it starts ({self.since})."
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            errors["min_agreement"] = "Must be between 0 and 1."
        for name in ("validation", "test"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                errors[name] = "Must be a share between 0 and 1 (e.g. 0.05)."
        if "validation" not in errors and "test" not in errors and self.validation + self.test >= 1:
            errors["test"] = "validation + test must leave rows for train (sum below 1)."
        if not 0 <= self.seed <= MAX_SEED:
            errors["seed"] = f"Must be between 0 and {MAX_SEED}."
        for name in LIST_CHOICES:
            for item in getattr(self, name):
                if not NAME_RE.match(item):
                    errors[name] = f"{item[:50]!r} is not a valid name."
                    break
        if set(self.sources) & set(self.exclude_sources):
            errors["exclude_sources"] = "A source cannot be both kept and left out."
        if self.length_balanced and self.ties == Ties.KEEP:
            errors["length_balanced"] = "Length balancing needs ties skipped."
        if kind is not None:
            try:
                kind = ExportKind(kind)
            except ValueError:
                errors["kind"] = (
                    f"Unknown kind; use one of: {', '.join(k.value for k in ExportKind)}."
                )
            else:
                defaults = ExportChoices()
                for name, kinds in KIND_ONLY.items():
                    if kind not in kinds and getattr(self, name) != getattr(defaults, name):
                        allowed = ", ".join(sorted(k.value for k in kinds))
                        errors[name] = f"Applies to {allowed} exports only, not {kind.value}."
        if errors:
            raise ValidationError(errors)
        return dataclasses.replace(
            self,
            languages=tuple(sorted(set(self.languages))),
            model_versions=tuple(sorted(set(self.model_versions))),
            exclude_annotators=tuple(sorted(set(self.exclude_annotators))),
            exclude_flags=tuple(sorted(set(self.exclude_flags))),
            sources=tuple(sorted(set(self.sources))),
            exclude_sources=tuple(sorted(set(self.exclude_sources))),
        )

    # -- output -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Every choice, defaults included, as JSON values (the manifest's `choices`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, StrEnum):
                value = value.value
            out[f.name] = value
        return out

    def changed(self) -> dict[str, Any]:
        """Only the choices that differ from the defaults (for short summaries)."""
        defaults = ExportChoices().to_json()
        return {k: v for k, v in self.to_json().items() if defaults[k] != v}

    @property
    def splits(self) -> tuple[str, ...]:
        names = ["train"]
        if self.validation > 0:
            names.append("validation")
        if self.test > 0:
            names.append("test")
        return tuple(names)


# The choices that hold a list of names (comma-separated on the command line).
LIST_CHOICES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ExportChoices) if isinstance(f.default, tuple)
)


def _coerce(name: str, raw: Any, f: dataclasses.Field) -> Any:
    """One JSON value to the field's type; ValueError says what was expected."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if name in ("since", "until"):
        if raw in (None, ""):
            return None
        if not isinstance(raw, str):
            raise ValueError("Expected a date as YYYY-MM-DD.")
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{raw[:30]!r} is not a date as YYYY-MM-DD.") from None
    if isinstance(default, StrEnum):
        enum = type(default)
        try:
            return enum(raw)
        except ValueError:
            known = ", ".join(e.value for e in enum)
            raise ValueError(f"{str(raw)[:30]!r} is not one of: {known}.") from None
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ValueError("Expected true or false.")
        return raw
    if isinstance(default, tuple):
        if isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise ValueError("Expected a list of names.")
        if len(raw) > 1000:
            raise ValueError("At most 1000 names.")
        return tuple(raw)
    if name == "seed":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("Expected a whole number.")
        return raw
    if name in ("validation", "test", "min_agreement"):
        if raw is None and name == "min_agreement":
            return None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError("Expected a number.")
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("Expected a finite number.")
        return value
    raise ValueError("Unsupported value.")  # pragma: no cover - every field is handled above


__all__ = [
    "KIND_LABELS",
    "LIST_CHOICES",
    "SCHEMA_VERSION",
    "ExportChoices",
    "ExportKind",
    "PairStrategy",
    "PairsFrom",
    "Ties",
]
