"""A lead imports a small prompt file from the project page and sees what came in."""

import json

import pytest

from annotations.selectors import prompt_pool
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_lead_uploads_a_jsonl_file_and_sees_the_summary(page):
    project = ProjectFactory(slug="alpha", name="Alpha")
    MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead")
    rows = ["How do tides work?", {"prompt": "Suggest a <b>name</b> for a cat.", "tags": ["pets"]}]
    rows.append("how do  tides work?")  # a duplicate of the first
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()

    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("link", name="Import prompts").click()
    page.wait_for_url("**/p/alpha/import/")
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "prompts.jsonl", "mimeType": "application/jsonl", "buffer": content}]
    )
    page.get_by_label("Format", exact=True).select_option("jsonl")
    page.get_by_role("button", name="Import").click()

    result = page.locator("[data-import-result='ok']")
    result.wait_for()
    assert "Imported 2 prompts (1 duplicate skipped)." in result.inner_text()
    assert sorted(prompt_pool(project=project).values_list("text", flat=True)) == [
        "How do tides work?",
        "Suggest a <b>name</b> for a cat.",
    ]

    # A refused file: the problems are listed and nothing more is stored.
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "bad.jsonl", "mimeType": "application/jsonl", "buffer": b'{"x": 1}\n'}]
    )
    page.get_by_role("button", name="Import").click()
    problems = page.locator("[data-import-result='refused']")
    problems.wait_for()
    assert "line 1: field 'prompt': missing" in problems.inner_text()
    assert prompt_pool(project=project).count() == 2
