"""Sampling parameters: one typed value with its defaults, its limits and its JSON form.

Every door builds it here rather than reading a dict with defaults of its own: the API and the
generations page from what a person sent laid over the project's settings, the comparisons from
a project's candidate settings, the worker from what a request stored. No torch here: the web
process imports it. Django is imported where a value is checked, not at import: the generation
engine and its benchmark build these values on machines without Django.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.core.exceptions import ValidationError

TEMPERATURE_MAX = 5
TOP_K_MAX = 1_000_000  # above any vocabulary; 0 means no top-k cut
REPETITION_PENALTY_MAX = 10
SEED_LIMIT = 2**32  # a seed is a 32-bit value: 0 <= seed < SEED_LIMIT


def max_new_tokens_limit() -> int:
    """The most new tokens any request may ask for (a setting, so read when checked)."""
    from django.conf import settings

    return settings.PARLEY["GENERATION"]["MAX_NEW_TOKENS"]


def _invalid(errors: dict[str, str] | Mapping[str, str]) -> ValidationError:
    """The error naming each bad field (Django's, imported only when something is bad)."""
    from django.core.exceptions import ValidationError

    return ValidationError(errors)


@dataclass(frozen=True)
class Rule:
    """What one parameter must be: its type, its range, and that range in words.

    Every bound is finite and small enough for the sampler's tensors (64-bit ints): a value that
    passes here can never overflow in a worker and take its batch-mates down with it.
    """

    kind: type  # int or float
    check: Callable[[float], bool]
    meaning: Callable[[], str]

    def parse(self, value: Any) -> int | float:
        """`value` as this parameter's type; ValueError (its message for people) otherwise."""
        # bool is an int to Python, never a sampling value.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"Must be a number, not {value!r}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Must be a finite number, not {value}.")
        if self.kind is int and value != int(value):
            raise ValueError("Must be a whole number.")
        try:
            value = self.kind(value)
        except OverflowError:  # an int too large for a float
            valid = False
        else:
            valid = self.check(value)
        if not valid:
            raise ValueError(f"{value} is out of range; must be {self.meaning()}.")
        return value


# In the order of SamplingParams' fields (the order error messages list them in).
RULES: dict[str, Rule] = {
    "temperature": Rule(
        float, lambda v: 0 <= v <= TEMPERATURE_MAX, lambda: f"between 0 and {TEMPERATURE_MAX}"
    ),
    "top_p": Rule(float, lambda v: 0 < v <= 1, lambda: "greater than 0 and at most 1"),
    "top_k": Rule(int, lambda v: 0 <= v <= TOP_K_MAX, lambda: f"between 0 and {TOP_K_MAX}"),
    "max_new_tokens": Rule(
        int,
        lambda v: 1 <= v <= max_new_tokens_limit(),
        lambda: f"between 1 and {max_new_tokens_limit()}",
    ),
    "repetition_penalty": Rule(
        float,
        lambda v: 0 < v <= REPETITION_PENALTY_MAX,
        lambda: f"greater than 0 and at most {REPETITION_PENALTY_MAX}",
    ),
    "seed": Rule(int, lambda v: 0 <= v < SEED_LIMIT, lambda: "between 0 and 2**32 - 1"),
}

# Written into every stored request even at their defaults, as requests always were: readers
# of a request (the API's clients) find how long and how hot it sampled without knowing defaults.
ALWAYS_STORED = ("temperature", "max_new_tokens")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample a reply. Temperature 0 means greedy; top_k 0 and top_p 1 mean no cut;
    no seed means a fresh random draw each time."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: Any, *, field_prefix: str = "params") -> SamplingParams:
        """The parameters in `data` (a JSON object), defaults for the rest.

        Raises ValidationError naming each bad key as `<field_prefix>.<key>` (`params.top_p`),
        or `field_prefix` itself when `data` is not an object.
        """
        if not isinstance(data, Mapping):
            raise _invalid({field_prefix: "Sampling parameters must be an object."})
        values: dict[str, int | float] = {}
        errors: dict[str, str] = {}
        for key, value in data.items():
            rule = RULES.get(key)
            if rule is None:
                errors[f"{field_prefix}.{key}"] = (
                    f"Unknown sampling parameter; use {', '.join(RULES)}."
                )
                continue
            try:
                values[key] = rule.parse(value)
            except ValueError as exc:
                errors[f"{field_prefix}.{key}"] = str(exc)
        if errors:
            raise _invalid(errors)
        return cls(**values)

    @classmethod
    def for_project(
        cls, project_sampling: Any, params: Any = None, *, field_prefix: str = "params"
    ) -> SamplingParams:
        """A project's sampling settings (`Project.sampling`) overlaid with `params`.

        Both are checked together, so a bad project setting is named like a bad parameter.
        """
        if params is not None and not isinstance(params, Mapping):
            raise _invalid({field_prefix: "Sampling parameters must be an object."})
        if project_sampling and not isinstance(project_sampling, Mapping):
            raise _invalid({field_prefix: "The project's sampling settings are not an object."})
        return cls.from_json(
            {**(project_sampling or {}), **(params or {})}, field_prefix=field_prefix
        )

    def clean(self, *, field_prefix: str = "params") -> None:
        """Check a value built in code (not read from JSON) against the same rules."""
        errors: dict[str, str] = {}
        for name, rule in RULES.items():
            value = getattr(self, name)
            if value is None and name == "seed":
                continue
            try:
                rule.parse(value)
            except ValueError as exc:
                errors[f"{field_prefix}.{name}"] = str(exc)
        if errors:
            raise _invalid(errors)

    def to_json(self) -> dict[str, int | float]:
        """The JSON object a request stores: parameters that differ from their defaults, plus
        temperature and max_new_tokens always. `from_json(p.to_json()) == p`."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name in ALWAYS_STORED or getattr(self, field.name) != field.default
        }

    def with_seed_moved(self, by: int) -> SamplingParams:
        """The same parameters with the seed (if any) moved on by `by` samples, kept 32-bit."""
        if self.seed is None or not by:
            return self
        return dataclasses.replace(self, seed=(self.seed + by) % SEED_LIMIT)
