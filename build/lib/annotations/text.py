"""What user input may be stored: text without NUL or lone surrogates, JSON of bounded shape.

Every door that stores what a client sent (pages, API, imports) checks it here first, so a bad
value is a 400 naming the field instead of a database error (PostgreSQL refuses NUL in text and
"Infinity" in JSON; SQLite stores a lone surrogate that no page can then encode, and overflows
on integers beyond 64 bits).
"""

from __future__ import annotations

import json
import math

from django.core.exceptions import ValidationError


def normalise(text: str) -> str:
    """The key two prompts share when they are duplicates: whitespace and case do not count."""
    return " ".join(text.split()).casefold()


# Deeper than any structure the product sends; far below what recursion in json or the
# database's JSON functions can take.
MAX_JSON_DEPTH = 64
# Integers stored or looked up must fit a signed 64-bit column (a primary key on every database).
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)


def text_problem(text: str) -> str | None:
    """Why the database (or a UTF-8 page) could not hold this string, if it could not."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (a broken \\u escape)"
    return None


def check_storable_text(value: str, field: str) -> str:
    """`value` unchanged, or a ValidationError naming `field` when it cannot be stored."""
    if why := text_problem(value):
        raise ValidationError({field: f"The text {why}."})
    return value


def json_problem(value, field: str) -> tuple[str, str] | None:
    """(field path, why) for the first part of a parsed JSON value that cannot be stored.

    Walks the structure once, without recursion: strings and keys as `text_problem`, integers
    within 64 bits, finite floats, at most MAX_JSON_DEPTH levels of arrays and objects.
    """
    stack = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if why := text_problem(item):
                return path, f"The text {why}."
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                return path, "The number is too large."
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "The number is too large."
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_JSON_DEPTH:
                return path, f"Nested deeper than {MAX_JSON_DEPTH} levels."
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str) or text_problem(key):
                        return path, "A key contains a NUL character or an unpaired surrogate."
                    stack.append((sub, f"{path}.{key}" if path else key, depth + 1))
            else:
                stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        else:
            return path, "Not a JSON value."
    return None


def check_storable_json(value, field: str):
    """`value` unchanged, or a ValidationError naming the part of `field` that cannot be stored."""
    if problem := json_problem(value, field):
        path, why = problem
        raise ValidationError({path or "non_field_errors": why})
    return value


def parse_json(raw: bytes | str, field: str):
    """A JSON body or form field parsed and checked as `check_storable_json`.

    Raises ValidationError naming `field` when it is not JSON, is nested thousands deep (the
    decoder runs out of recursion) or holds what cannot be stored.
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValidationError({field: "Malformed JSON: nested too deeply."}) from None
    except ValueError:
        raise ValidationError({field: "Malformed JSON."}) from None
    return check_storable_json(value, field)
