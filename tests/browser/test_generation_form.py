"""The generations page's form with earlier turns and sampling fields, and its filters, in
Chromium (no worker: the request stays queued); a double click queues one request."""

import re

import pytest
from playwright.sync_api import expect

from annotations.selectors import thread_to
from tests.browser.conftest import ARTIFACTS, log_in
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationRequest

pytestmark = pytest.mark.browser


def test_a_multi_turn_request_with_a_seed_then_filtered(page):
    model = ModelVersionFactory(name="tiny-policy")
    project = ProjectFactory(slug="alpha", name="Alpha")
    project.candidate_models.add(model)
    MembershipFactory(project=project, user=UserFactory(username="eve"), role="engineer")

    log_in(page, "eve", "pw-for-tests")
    page.goto("/p/alpha/generations/")
    turns = page.locator("#context-turn-list > li")
    expect(turns).to_have_count(1)
    expect(turns.nth(0)).to_be_hidden()  # folded until asked for
    page.get_by_text("Earlier turns (optional)").click()
    turns.nth(0).get_by_label("Role").select_option("user")
    turns.nth(0).get_by_label("Text").fill("Name a <b>fruit</b>.")
    page.get_by_role("button", name="Add an earlier turn").click()
    expect(turns).to_have_count(2)
    turns.nth(1).get_by_label("Role").select_option("assistant")
    expect(turns.nth(1).get_by_label("Text")).to_be_focused()
    turns.nth(1).get_by_label("Text").fill("Apple.")
    page.get_by_label("Prompt").fill("Another one?")
    page.get_by_label("Top p").fill("0.8")
    page.get_by_label("Top k").fill("20")
    page.get_by_label("Seed").fill("42")
    page.screenshot(path=str(ARTIFACTS / "generation-form.png"), full_page=True)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    # Two clicks in one go (`data-once`): the second submit never reaches the form.
    submits = page.evaluate(
        """() => {
        const button = document.querySelector("#generations-panel form[data-once] [type=submit]");
        let count = 0;
        button.form.addEventListener("submit", () => { count += 1; });
        button.click();
        button.click();
        return count;
    }"""
    )
    assert submits == 1

    card = page.locator("article.generation").first
    expect(card).to_have_attribute("data-state", "queued")
    page.wait_for_timeout(300)
    assert len(posts) == 1, posts
    generation = GenerationRequest.objects.get()
    assert [(m.role, m.text) for m in thread_to(generation.context)] == [
        ("user", "Name a <b>fruit</b>."),
        ("assistant", "Apple."),
        ("user", "Another one?"),
    ]
    assert generation.params["top_p"] == 0.8 and generation.params["seed"] == 42
    assert generation.params["top_k"] == 20
    # The form came back empty and folded, with one earlier turn and the button to add more.
    expect(turns).to_have_count(1)
    expect(turns.nth(0)).to_be_hidden()
    page.get_by_text("Earlier turns (optional)").click()
    expect(page.get_by_role("button", name="Add an earlier turn")).to_be_visible()

    # Filtering swaps the list and keeps the filters in the address.
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(page.get_by_text("No requests match these filters.")).to_be_visible()
    page.get_by_label("State").select_option("queued")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("article.generation")).to_have_count(1)
