"""Capabilities are listed only where the feature exists: every capability the project API
tells a member about opens a page that answers that member, and is refused (403) to a member
whose role lacks it."""

from __future__ import annotations

import pytest
from django.test import Client

from annotations.access import CAPABILITIES, LISTED_CAPABILITIES, listed_capabilities

pytestmark = pytest.mark.django_db

# A page each listed capability opens (GET), in project "alpha".
PAGE_OF = {
    "annotate": None,  # claimed with a POST: checked below through the API
    "manage": "/p/alpha/reviews/",
    "explore": "/p/alpha/explore/",
    "dashboards": "/p/alpha/dashboard/",
    "export": "/p/alpha/exports/",
    "generate": "/p/alpha/generations/",
    "train": "/p/alpha/training/",
}


def test_every_listed_capability_is_a_real_one_with_a_page():
    assert LISTED_CAPABILITIES.keys() <= CAPABILITIES.keys()
    assert LISTED_CAPABILITIES.keys() == PAGE_OF.keys()


def test_the_api_lists_only_capabilities_that_open_something(
    api_client_for, trainer, lead, engineer
):
    for user, role in [(trainer, "trainer"), (lead, "lead"), (engineer, "engineer")]:
        body = api_client_for(user).get("/api/v1/projects/alpha/").json()
        assert body["capabilities"] == listed_capabilities(role)
        client = Client()
        client.force_login(user)
        for capability, url in PAGE_OF.items():
            if url is None:
                continue
            status = client.get(url).status_code
            assert status == (200 if capability in body["capabilities"] else 403), (role, url)
        claim = api_client_for(user).post(
            "/api/v1/projects/alpha/tasks/next", {"kind": "demonstration"}, format="json"
        )
        allowed = "annotate" in body["capabilities"]
        assert (claim.status_code in (200, 204)) if allowed else claim.status_code == 403, role


def test_the_schema_says_what_each_capability_opens(api_client_for, engineer):
    schema = api_client_for(engineer).get("/api/v1/schema/?format=json").json()
    field = schema["components"]["schemas"]["ProjectOutput"]["properties"]["capabilities"]
    for name in LISTED_CAPABILITIES:
        assert f"`{name}`" in field["description"]
