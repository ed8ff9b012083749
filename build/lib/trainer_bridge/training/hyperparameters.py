"""Training hyper-parameters per stage: names, defaults and allowed ranges, checked before a run.

One frozen dataclass per stage. `hyperparameters_from_json(stage, data)` is the one door: it
refuses unknown names and values out of range with a `HyperparameterError` naming the field, and
fills in the defaults; `to_json()` gives every value back, defaults included, and feeding it to
`hyperparameters_from_json` again gives an equal object. Imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

STAGES = ("sft", "rm", "ppo")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
KL_ESTIMATORS = ("k1", "k3")
SEED_MAX = 2**32 - 1


class HyperparameterError(ValueError):
    """A hyper-parameter the run cannot take: `field` names it ("" for the value as a whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rule:
    """What values one hyper-parameter accepts."""

    kind: str  # "int", "float", "bool" or "choice"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        noun = "an integer" if self.kind == "int" else "a number"
        low = _format_number(self.low)
        high = _format_number(self.high)
        if self.low_open:
            return f"{noun} greater than {low} and at most {high}"
        return f"{noun} from {low} to {high}"

    def clean(self, name: str, value: Any) -> Any:
        """`value` as this rule's type, or a HyperparameterError saying what is allowed."""
        problem = HyperparameterError(name, f"must be {self.describe()}; got {value!r}")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise problem
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise problem
            return value
        # bool is an int to Python, never a number to a user.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise problem
        if isinstance(value, float) and not math.isfinite(value):
            raise problem
        if self.kind == "int":
            # JSON writers may spell 10000 as 1e4; a whole float is the integer it names.
            if isinstance(value, float):
                if not value.is_integer():
                    raise problem
                value = int(value)
        else:
            value = float(value)
        assert self.low is not None and self.high is not None
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low or value > self.high:
            raise problem
        return value


def _format_number(value: float | None) -> str:
    if value is None:
        return "?"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}".replace(",", "")
    return f"{value:g}"


def _int(default: int, low: int, high: int, help: str) -> Any:
    return field(default=default, metadata={"rule": Rule("int", low, high, help=help)})


def _float(default: float, low: float, high: float, help: str, *, low_open: bool = False) -> Any:
    rule = Rule("float", low, high, low_open=low_open, help=help)
    return field(default=default, metadata={"rule": rule})


def _bool(default: bool, help: str) -> Any:
    return field(default=default, metadata={"rule": Rule("bool", help=help)})


def _choice(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"rule": Rule("choice", choices=choices, help=help)})


_LEARNING_RATE_HELP = "peak learning rate of AdamW"


@dataclass(frozen=True)
class _Common:
    """What every stage takes."""

    stage: ClassVar[str] = ""

    learning_rate: float = _float(1e-5, 0.0, 1.0, _LEARNING_RATE_HELP, low_open=True)
    batch_size: int = _int(8, 1, 4096, "rows per device per optimizer micro-step")
    gradient_accumulation_steps: int = _int(1, 1, 1024, "micro-steps per optimizer step")
    max_length: int = _int(
        1024, 16, 131072, "longest row in tokens; longer rows are dropped and counted"
    )
    seed: int = _int(0, 0, SEED_MAX, "seed for initialisation, data order and sampling")
    precision: str = _choice(
        "auto",
        PRECISIONS,
        "auto: bfloat16 mixed precision on a GPU that has it, else float32",
    )
    gradient_checkpointing: bool = _bool(
        False, "recompute activations in the backward pass: less memory, ~20-30 % slower"
    )
    logging_steps: int = _int(10, 1, 100000, "optimizer steps between two metrics events")

    def __post_init__(self) -> None:
        self.clean()

    def clean(self) -> None:
        """Raise HyperparameterError for the first value out of range or in conflict."""
        for spec in fields(self):
            rule: Rule = spec.metadata["rule"]
            value = getattr(self, spec.name)
            if rule.clean(spec.name, value) != value or type(value) is not _python_type(rule):
                raise HyperparameterError(spec.name, f"must be {rule.describe()}; got {value!r}")
        self._clean_together()

    def _clean_together(self) -> None:
        """Rules that tie two values together (subclasses add theirs)."""

    def to_json(self) -> dict[str, Any]:
        """Every value, defaults included, in declaration order."""
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}

    @property
    def effective_batch_size(self) -> int:
        """Rows per optimizer step on one process."""
        return self.batch_size * self.gradient_accumulation_steps


def _python_type(rule: Rule) -> type:
    return {"int": int, "float": float, "bool": bool, "choice": str}[rule.kind]


@dataclass(frozen=True)
class _Supervised(_Common):
    """SFT and reward modelling: epochs over a fixed dataset, evaluated on its validation split."""

    epochs: int = _int(1, 1, 1000, "passes over the training rows")
    max_steps: int = _int(
        0, 0, 10_000_000, "stop after this many optimizer steps (0: as many as the epochs take)"
    )
    warmup_ratio: float = _float(0.0, 0.0, 0.5, "share of the steps spent warming up")
    weight_decay: float = _float(0.0, 0.0, 1.0, "AdamW weight decay")
    eval_steps: int = _int(
        0, 0, 10_000_000, "optimizer steps between evaluations (0: at the end of each epoch)"
    )


@dataclass(frozen=True)
class SFTHyperparameters(_Supervised):
    stage: ClassVar[str] = "sft"

    learning_rate: float = _float(2e-5, 0.0, 1.0, _LEARNING_RATE_HELP, low_open=True)


@dataclass(frozen=True)
class RewardHyperparameters(_Supervised):
    stage: ClassVar[str] = "rm"

    learning_rate: float = _float(1e-5, 0.0, 1.0, _LEARNING_RATE_HELP, low_open=True)
    center_rewards_coefficient: float = _float(
        0.01, 0.0, 10.0, "pull the mean reward towards 0 (0: off); PPO wants centred scores"
    )


@dataclass(frozen=True)
class PPOHyperparameters(_Common):
    stage: ClassVar[str] = "ppo"

    learning_rate: float = _float(3e-6, 0.0, 1.0, _LEARNING_RATE_HELP, low_open=True)
    logging_steps: int = _int(1, 1, 100000, "PPO steps between two metrics events")
    steps: int = _int(
        100, 1, 1_000_000, "PPO steps: each samples batch_size x accumulation prompts per process"
    )
    ppo_epochs: int = _int(4, 1, 64, "optimisation passes over each sampled batch")
    num_mini_batches: int = _int(1, 1, 4096, "mini-batches each sampled batch is split into")
    response_length: int = _int(128, 1, 32768, "most tokens a sampled reply may have")
    temperature: float = _float(0.7, 0.0, 5.0, "sampling temperature", low_open=True)
    kl_coef: float = _float(0.05, 0.0, 100.0, "weight of the KL penalty to the reference model")
    kl_estimator: str = _choice("k1", KL_ESTIMATORS, "k1 (plain) or k3 (lower variance)")
    cliprange: float = _float(0.2, 0.0, 10.0, "policy ratio clip range", low_open=True)
    vf_coef: float = _float(0.1, 0.0, 100.0, "weight of the value loss")
    cliprange_value: float = _float(0.2, 0.0, 100.0, "value clip range", low_open=True)
    gamma: float = _float(1.0, 0.0, 1.0, "discount factor")
    lam: float = _float(0.95, 0.0, 1.0, "GAE lambda")
    whiten_rewards: bool = _bool(False, "whiten rewards per mini-batch (needs >= 8 rows in one)")
    missing_eos_penalty: float = _float(
        0.0, 0.0, 100.0, "subtracted from the score of a reply that never ends its turn (0: off)"
    )

    def _clean_together(self) -> None:
        if self.response_length >= self.max_length:
            raise HyperparameterError(
                "response_length",
                f"must be less than max_length ({self.max_length}), which also holds the prompt; "
                f"got {self.response_length}",
            )
        if self.effective_batch_size % self.num_mini_batches:
            raise HyperparameterError(
                "num_mini_batches",
                f"must divide batch_size x gradient_accumulation_steps "
                f"({self.effective_batch_size}); got {self.num_mini_batches}",
            )
        if self.whiten_rewards and self.effective_batch_size // self.num_mini_batches < 8:
            raise HyperparameterError(
                "whiten_rewards",
                "needs at least 8 rows per mini-batch (batch_size x gradient_accumulation_steps "
                "/ num_mini_batches)",
            )


Hyperparameters = SFTHyperparameters | RewardHyperparameters | PPOHyperparameters

_CLASSES: dict[str, type[_Common]] = {
    "sft": SFTHyperparameters,
    "rm": RewardHyperparameters,
    "ppo": PPOHyperparameters,
}


def _class_for(stage: str) -> type[_Common]:
    try:
        return _CLASSES[stage]
    except KeyError:
        raise ValueError(f"Unknown stage {stage!r}; expected one of {', '.join(STAGES)}.") from None


def hyperparameters_from_json(stage: str, data: Mapping[str, Any] | None) -> Hyperparameters:
    """The stage's hyper-parameters from a JSON object: defaults for missing names.

    Raises HyperparameterError naming the field for an unknown name or a value out of range,
    and ValueError for an unknown stage (the caller checks the stage first).
    """
    cls = _class_for(stage)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise HyperparameterError("", f"must be a JSON object; got {type(data).__name__}")
    specs = {spec.name: spec for spec in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in specs:
            raise HyperparameterError(
                str(name),
                f"is not a hyper-parameter of the {stage} stage; known: {', '.join(sorted(specs))}",
            )
        values[name] = specs[name].metadata["rule"].clean(name, value)
    return cls(**values)  # type: ignore[return-value]


@dataclass(frozen=True)
class HyperparameterField:
    """One hyper-parameter as a form shows it."""

    name: str
    kind: str  # "int", "float", "bool" or "choice"
    default: Any
    allowed: str  # e.g. "an integer from 1 to 4096"
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    minimum_exclusive: bool = False  # the minimum itself is not allowed


def hyperparameter_fields(stage: str) -> list[HyperparameterField]:
    """The stage's hyper-parameters with their defaults and allowed values, in order."""
    cls = _class_for(stage)
    defaults = cls()
    result = []
    for spec in fields(cls):
        rule: Rule = spec.metadata["rule"]
        result.append(
            HyperparameterField(
                name=spec.name,
                kind=rule.kind,
                default=getattr(defaults, spec.name),
                allowed=rule.describe(),
                help=rule.help,
                choices=rule.choices,
                minimum=rule.low,
                maximum=rule.high,
                minimum_exclusive=rule.low_open,
            )
        )
    return result
