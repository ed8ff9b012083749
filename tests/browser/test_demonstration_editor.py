"""The demonstration editor on a 1366x768 screen: focused and visible without scrolling,
guidelines folded after the first visit, a Markdown preview, the lease counting down, and a
skip that asks before it throws written turns away."""

import re

import pytest
from playwright.sync_api import expect

from annotations.models import Conversation
from annotations.services import conversation_start
from labelling.models import Task, TaskSkip
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.browser

SCREENSHOT = SCREENSHOT_DIR / "screenshot-demonstration-editor.png"
GUIDELINES = (
    "# How we write\n\nBe kind and brief.\n\n"
    + "\n\n".join(f"- General rule number {i}: keep replies honest." for i in range(30))
    + "\n\n## When ranking replies\n\nOrder them from best to worst.\n"
)


@pytest.fixture
def small_page(browser, live_server):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def editor_ready(page) -> None:
    page.locator("html[data-demo-ready='true']").wait_for(state="attached")


def test_the_editor_on_a_laptop_screen(small_page):
    page = small_page
    project = ProjectFactory(slug="alpha", name="Alpha", guidelines=GUIDELINES)
    trainer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    long_prompt = "My question, told at length. " * 40
    for text in (long_prompt, "A second prompt?"):
        conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
    log_in(page, "tina", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("button", name="Write a demonstration").click()
    editor_ready(page)
    editor = page.locator("#demo-editor")

    # Focused and wholly on the first screen, though the guidelines are open (first visit) and
    # the seed prompt is long.
    expect(editor).to_be_focused()
    box = editor.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 768, box
    assert page.evaluate("window.scrollY") == 0
    guidelines = page.locator("#demo-guidelines")
    expect(guidelines).to_have_attribute("open", "")
    # The part for demonstrations; the ranking section only under "All the project's guidelines".
    expect(guidelines.get_by_role("heading", name="Guidelines for demonstrations")).to_be_visible()
    expect(page.get_by_text("Order them from best to worst.")).to_be_hidden()

    # The lease's end, written as every page writes a moment, counting down.
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")
    expect(page.locator("#demo-lease time")).to_have_text(stamp)
    left = page.locator("#demo-lease-left")
    expect(left).to_have_text(re.compile(r"^\(\d+:\d\d left\)$"))
    first = left.text_content()
    expect(left).not_to_have_text(first, timeout=3000)

    # A Markdown preview of the turn, sanitised.
    editor.fill("Water it **weekly**.\n\n- a list <script>alert(1)</script>")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#demo-preview")
    expect(preview.locator("strong")).to_have_text("weekly")
    expect(preview.locator("li")).to_have_count(1)
    assert preview.locator("script").count() == 0
    page.screenshot(path=str(SCREENSHOT))

    editor.press("Control+Enter")
    expect(page.locator("#demo-turns > li")).to_have_count(1)
    # A save renews the lease; the page writes the new end the same way.
    saved = re.compile(r"^Saved at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    expect(page.locator("#demo-save-status")).to_have_text(saved)
    expect(page.locator("#demo-lease time")).to_have_text(stamp)

    # Skip asks first; "Cancel" keeps the task and the turn.
    page.locator("#demo-skip summary").click()
    questions = []

    def dismiss(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Skip (and report)").click()
    expect(page.locator("#demo-turns > li")).to_have_count(1)
    assert questions and "throw away 1 written turn" in questions[0]
    task = Task.objects.get(assignee=trainer, state="assigned")
    assert not TaskSkip.objects.exists()

    # "OK" skips; the next task's guidelines start folded (second visit to the project).
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Skip (and report)").click()
    expect(page.get_by_text("Skipped. Here is another task.")).to_be_visible()
    editor_ready(page)
    assert TaskSkip.objects.filter(task=task, user=trainer).exists()
    expect(page.locator("#demo-guidelines")).not_to_have_attribute("open", "")
    expect(page.locator("#demo-editor")).to_be_focused()
    box = page.locator("#demo-editor").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 768, box
