"""The one way Parley writes a moment: ISO 8601 in UTC with a `Z` (`2026-03-01T09:30:00Z`) in
API bodies, manifests and page data, and `2026-03-01 09:30 UTC` for people on pages.

DRF writes its DateTimeFields the same way (TIME_ZONE is UTC); `iso_utc` is for the bodies and
files that are built by hand."""

from __future__ import annotations

import datetime as dt

READABLE = "%Y-%m-%d %H:%M"
READABLE_SECONDS = "%Y-%m-%d %H:%M:%S"


def iso_utc(value: dt.datetime | None) -> str | None:
    """`value` in UTC as ISO 8601 ending in `Z` (microseconds kept when there are any); None
    stays None. A naive datetime is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def readable_utc(value: dt.datetime, *, seconds: bool = False) -> str:
    """`value` for a page: `2026-03-01 09:30 UTC` (with `:05` seconds when asked)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    shown = value.astimezone(dt.UTC).strftime(READABLE_SECONDS if seconds else READABLE)
    return f"{shown} UTC"
