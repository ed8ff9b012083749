"""What a trainer sends to rank a set, checked: order, flags, "all bad", rewrite, time spent."""

from __future__ import annotations

from django.core.exceptions import ValidationError

SUBMIT_FIELDS = ("order", "flags", "all_bad", "rewrite", "time_spent_ms")
# Time on task is stored in a PositiveIntegerField (a signed 32-bit column on PostgreSQL).
MAX_TIME_SPENT_MS = 2**31 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(values) -> str:
    return ", ".join(str(v) for v in sorted(values))


def clean_order(order: object, candidate_ids: set[int]) -> list[list[int]]:
    """Groups of candidate ids, best first, covering every candidate exactly once."""
    shape = (
        "The order must be a list of groups of candidate ids, best first, e.g. [[12], [14, 15]] "
        "(ids in one group are tied)."
    )
    if not isinstance(order, list) or not order:
        raise ValidationError(shape)
    groups: list[list[int]] = []
    for group in order:
        if not isinstance(group, list) or not group or not all(_is_int(i) for i in group):
            raise ValidationError(shape)
        groups.append(sorted(group))
    seen: list[int] = [i for group in groups for i in group]
    problems = []
    if missing := candidate_ids - set(seen):
        problems.append(f"missing {_ids(missing)}")
    if unknown := set(seen) - candidate_ids:
        problems.append(f"not candidates of this set: {_ids(unknown)}")
    if repeated := {i for i in seen if seen.count(i) > 1}:
        problems.append(f"repeated {_ids(repeated)}")
    if problems:
        raise ValidationError(
            f"The order must rank each of the set's candidates ({_ids(candidate_ids)}) exactly "
            f"once: {'; '.join(problems)}."
        )
    return groups


def clean_flags(flags: object, candidate_ids: set[int], allowed: list[str]) -> dict[str, list[str]]:
    """{candidate id: [flag names]} with the project's flag labels only; empty lists dropped."""
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise ValidationError(
            'Flags must be an object of candidate id to label names, e.g. {"12": ["harmful"]}.'
        )
    cleaned: dict[str, list[str]] = {}
    for key, names in flags.items():
        try:
            candidate_id = int(key)
        except (TypeError, ValueError):
            candidate_id = None
        if candidate_id not in candidate_ids:
            raise ValidationError(f"Flags name {key!r}, which is not a candidate of this set.")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValidationError(f"Flags of candidate {key} must be a list of label names.")
        if unknown := sorted(set(names) - set(allowed)):
            raise ValidationError(
                f"Unknown flag {', '.join(repr(n) for n in unknown)} on candidate {key}; "
                f"this project's flags are: {', '.join(allowed) or 'none'}."
            )
        if names:
            cleaned[str(candidate_id)] = [n for n in allowed if n in names]
    return cleaned


def clean_all_bad(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError("all_bad is true or false.")
    return value


def clean_rewrite(rewrite: object) -> str | None:
    """A better reply, as a message: `{"role": "assistant", "content": ...}` (the role may be left
    out). Clients written before messages said `content` send `{"text": ...}`, still read."""
    if rewrite is None:
        return None
    shape = 'A rewrite is null or {"role": "assistant", "content": "a better reply"}.'
    if not isinstance(rewrite, dict):
        raise ValidationError(shape)
    content = rewrite["content"] if "content" in rewrite else rewrite.get("text")
    if not isinstance(content, str):
        raise ValidationError(shape)
    if rewrite.get("role", "assistant") != "assistant":
        raise ValidationError("A rewrite is an assistant reply: its role is assistant.")
    allowed = {"role", "content"} if "content" in rewrite else {"text"}
    if extra := sorted(set(rewrite) - allowed):
        raise ValidationError(
            f"A rewrite has a role and a content; unexpected: {', '.join(extra)}."
        )
    return content


def clean_time_spent(value: object) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_TIME_SPENT_MS:
        raise ValidationError(
            "Time spent is a whole number of milliseconds, 0 or more (or null when unknown)."
        )
    return value


def clean_ranking(data: dict, *, candidate_ids: set[int], allowed_flags: list[str]) -> dict:
    """Every field of SUBMIT_FIELDS cleaned; a ValidationError names every bad field at once."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, object] = {}
    for key in sorted(set(data) - set(SUBMIT_FIELDS)):
        errors[key] = [f"Unexpected field; a ranking has: {', '.join(SUBMIT_FIELDS)}."]
    checks = {
        "order": lambda v: clean_order(v, candidate_ids),
        "flags": lambda v: clean_flags(v, candidate_ids, allowed_flags),
        "all_bad": clean_all_bad,
        "rewrite": clean_rewrite,
        "time_spent_ms": clean_time_spent,
    }
    for field, check in checks.items():
        try:
            cleaned[field] = check(data.get(field))
        except ValidationError as exc:
            errors[field] = exc.messages
    if errors:
        raise ValidationError(errors)
    return cleaned
