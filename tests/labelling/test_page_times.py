"""Moments on pages are written one way: `<time datetime="...Z">YYYY-MM-DD HH:MM UTC</time>`."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from annotations.models import Membership
from labelling.models import Task
from tests.factories import claim, make_ranking_set, rank

pytestmark = pytest.mark.django_db

MOMENT = re.compile(r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)">([^<]*)</time>')
WHEN = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
SHOWN = '<time datetime="2026-03-01T09:30:00Z">2026-03-01 09:30 UTC</time>'


def test_member_since_dates_on_the_members_and_project_pages(client, project, lead, trainer):
    Membership.objects.filter(project=project, user=trainer).update(created_at=WHEN)
    client.force_login(lead)
    members = client.get(reverse("members", kwargs={"slug": project.slug})).content.decode()
    assert SHOWN in members
    detail = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert SHOWN in detail


def test_the_trainers_home_shows_the_lease_and_submissions_as_moments(client, project, trainer):
    make_ranking_set(project)
    done = claim(project, trainer)
    rank(done, trainer)
    Task.objects.filter(pk=done.pk).update(done_at=WHEN)
    make_ranking_set(project)
    held = claim(project, trainer)
    client.force_login(trainer)
    page = client.get(reverse("trainer-home", args=[project.slug])).content.decode()
    assert SHOWN in page  # the submission
    lease = held.lease_expires_at.astimezone(dt.UTC)
    assert f'held until <time datetime="{lease:%Y-%m-%dT%H:%M:%S}' in page
    # Every moment on the page reads the same way, and none in another format.
    moments = MOMENT.findall(page)
    assert len(moments) >= 2
    for iso, shown in moments:
        assert shown == f"{iso[:10]} {iso[11:16]} UTC"
