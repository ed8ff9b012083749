"""One time format: ISO 8601 in UTC with a Z for machines, `YYYY-MM-DD HH:MM UTC` for people."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.template import Context, Template

from annotations.timestamps import iso_utc, readable_utc

PARIS = ZoneInfo("Europe/Paris")


def test_iso_utc_converts_to_utc_and_ends_in_z():
    assert iso_utc(dt.datetime(2026, 3, 1, 10, 30, tzinfo=PARIS)) == "2026-03-01T09:30:00Z"
    assert iso_utc(dt.datetime(2026, 3, 1, 9, 30, 0, 250, tzinfo=dt.UTC)) == (
        "2026-03-01T09:30:00.000250Z"
    )
    assert iso_utc(dt.datetime(2026, 3, 1, 9, 30)) == "2026-03-01T09:30:00Z"  # naive: UTC
    assert iso_utc(None) is None


def test_iso_utc_matches_what_drf_writes():
    from rest_framework import serializers

    moment = dt.datetime(2026, 7, 4, 12, 0, 5, 123456, tzinfo=dt.UTC)
    assert serializers.DateTimeField().to_representation(moment) == iso_utc(moment)


def test_readable_utc():
    moment = dt.datetime(2026, 3, 1, 10, 30, 7, tzinfo=PARIS)
    assert readable_utc(moment) == "2026-03-01 09:30 UTC"
    assert readable_utc(moment, seconds=True) == "2026-03-01 09:30:07 UTC"


def test_the_timestamp_filter_writes_a_time_element():
    moment = dt.datetime(2026, 3, 1, 9, 30, 7, tzinfo=dt.UTC)
    template = Template(
        '{% load timestamps %}{{ at|timestamp }}|{{ at|timestamp:"seconds" }}|{{ none|timestamp }}'
    )
    assert template.render(Context({"at": moment, "none": None})) == (
        '<time datetime="2026-03-01T09:30:07Z">2026-03-01 09:30 UTC</time>|'
        '<time datetime="2026-03-01T09:30:07Z">2026-03-01 09:30:07 UTC</time>|'
    )
