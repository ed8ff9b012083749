"""`{{ value|timestamp }}`: a moment on a page, one format everywhere (see annotations.timestamps):
`<time datetime="2026-03-01T09:30:00Z">2026-03-01 09:30 UTC</time>`; `|timestamp:"seconds"`
adds the seconds, for live pages. An empty value shows as an empty string."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.html import format_html

from annotations.timestamps import iso_utc, readable_utc

register = template.Library()


@register.filter(name="timestamp")
def timestamp(value: dt.datetime | None, precision: str = "") -> str:
    if not isinstance(value, dt.datetime):
        return ""
    return format_html(
        '<time datetime="{}">{}</time>',
        iso_utc(value),
        readable_utc(value, seconds=precision == "seconds"),
    )
