"""The kinds of task the lifecycle hands out, by name: one literal registry, no discovery."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from labelling.demonstrations.kind import DEMONSTRATION
from labelling.rankings import RANKING
from labelling.taskkind import TaskKind

TASK_KINDS: dict[str, TaskKind] = {
    "demonstration": DEMONSTRATION,
    "ranking": RANKING,
}


def task_kind(kind: str) -> TaskKind:
    """The kind named `kind`; a ValidationError naming the field for an unknown one."""
    try:
        return TASK_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(TASK_KINDS))
        raise ValidationError(
            {"kind": f"Unknown task kind {kind!r}; use one of: {known}."}
        ) from None
