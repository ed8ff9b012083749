"""A trainer writes a demonstration in the browser with a real draft model behind the page."""

import random

import pytest
from playwright.sync_api import expect

from annotations.models import Conversation, Message
from annotations.services import conversation_start
from labelling.demonstrations import SCRATCH_KEY, edit_distance
from labelling.models import Task
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationRequest

pytestmark = [pytest.mark.browser, pytest.mark.worker]

# Written under var/ so test runs never touch the tracked docs/ copy; set
# PARLEY_SCREENSHOT_DIR=docs to refresh the README pictures.
SCREENSHOT = SCREENSHOT_DIR / "screenshot-demonstration.png"
DRAFT_TIMEOUT_MS = 120_000


def editor_ready(page) -> None:
    """Wait until the page's script has wired the editor (it loads deferred)."""
    page.locator("html[data-demo-ready='true']").wait_for(state="attached")


def test_two_exchanges_with_one_edited_draft_survive_a_reload(
    page, start_celery_worker, tiny_model_paths
):
    model = ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))
    project = ProjectFactory(
        slug="alpha",
        name="Alpha",
        draft_model=model,
        sampling={"temperature": 0.8, "max_new_tokens": 24, "seed": 1},
        guidelines="## Writing demonstrations\n\n- Answer what was asked, **briefly**.\n"
        "- Write the user's turns as a real person would.",
    )
    trainer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    _, prompt = conversation_start(
        project=project,
        text="How do I keep a <basil> plant alive on a windowsill?",
        source=Conversation.Source.PROMPT,
    )
    start_celery_worker()

    # Only the draft panel polls; the shared status fragment inside it stays inert.
    polled = []
    page.on("request", lambda r: polled.append(r.url) if "/generations/" in r.url else None)

    log_in(page, "tina", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("button", name="Write a demonstration").click()
    expect(page.get_by_role("heading", name="Write a demonstration")).to_be_visible()
    editor_ready(page)
    task = Task.objects.get(kind="demonstration", assignee=trainer)
    editor = page.locator("#demo-editor")
    status = page.locator("#demo-save-status")
    next_role = page.locator("#demo-next-role")

    # The seed prompt is the first user turn, shown as text; the assistant speaks next.
    expect(page.locator(".demo-given .turn-body")).to_have_text(prompt.text)
    expect(next_role).to_have_text("Assistant")
    expect(page.locator("#demo-editor-card")).to_have_attribute("data-role", "assistant")

    # A draft is asked for on its own; insert it, then edit it.
    insert = page.locator("[data-insert-draft]")
    insert.wait_for(timeout=DRAFT_TIMEOUT_MS)
    draft_text = insert.get_attribute("data-draft-text")
    insert.click()
    expect(editor).to_have_value(draft_text)
    added = " Water it when the top of the soil is dry."
    editor.press("Control+End")
    editor.press_sequentially(added)
    editor.press("Control+Enter")
    expect(page.locator("#demo-turns > li")).to_have_count(1)
    expect(page.locator("#demo-turns > li.assistant .turn-meta")).to_contain_text("model draft")
    expect(next_role).to_have_text("User")

    # Midway: a user turn half-written in the editor, saved, then the page is reloaded.
    question = "What about winter? My flat gets cold & dark."
    editor.fill(question)
    expect(status).to_have_attribute("data-state", "saved", timeout=15_000)
    page.reload()
    editor_ready(page)
    expect(page.locator("#demo-turns > li")).to_have_count(1)
    expect(page.locator("#demo-turns > li .turn-body")).to_have_text(draft_text + added)
    expect(editor).to_have_value(question)
    expect(next_role).to_have_text("User")

    editor.press("Control+Enter")
    expect(next_role).to_have_text("Assistant")
    # A second draft arrives for the new point; the trainer ignores it and writes their own.
    page.locator("[data-insert-draft]").wait_for(timeout=DRAFT_TIMEOUT_MS)
    answer = "Bring it indoors, keep it away from cold glass and add a grow light."
    editor.fill(answer)
    page.locator("#demo-guidelines").evaluate("d => { d.open = true; }")  # for the screenshot
    expect(status).to_have_attribute("data-state", "saved", timeout=15_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.get_by_role("button", name="Submit demonstration").click()
    expect(page.get_by_role("heading", name="Submitted")).to_be_visible()

    assert polled == []

    task.refresh_from_db()
    assert task.state == "done"
    reply, asked, answered = (Message.objects.get(pk=pk) for pk in task.result["messages"])
    assert [m.role for m in (reply, asked, answered)] == ["assistant", "user", "assistant"]
    assert (reply.parent, asked.parent, answered.parent) == (prompt, reply, asked)
    assert all(
        m.author_user == trainer and m.author_model is None for m in (reply, asked, answered)
    )
    # The first reply keeps the draft it started from and how far it was edited.
    draft = reply.draft
    assert draft.text == draft_text and draft.author_model == model and draft.parent == prompt
    assert draft.generation_output.request.purpose == GenerationRequest.Purpose.DRAFT
    assert reply.text == draft_text + added
    assert reply.draft_edit_distance == edit_distance(draft_text, reply.text) == len(added)
    # The second was written from scratch: no draft, though one was offered beside it.
    assert answered.text == answer and answered.draft is None
    assert answered.draft_edit_distance is None
    assert Message.objects.filter(parent=asked, author_model=model).exists()
    assert not Message.objects.filter(**{f"meta__{SCRATCH_KEY}": task.pk}).exists()


@pytest.mark.browser
def test_turns_can_be_edited_and_deleted_and_bad_ones_are_refused(page):
    project = ProjectFactory(slug="alpha", name="Alpha", max_message_chars=40)
    trainer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    log_in(page, "tina", "pw-for-tests")
    page.get_by_role("button", name="Write a demonstration").click()  # from the home page
    editor_ready(page)
    editor = page.locator("#demo-editor")
    turns = page.locator("#demo-turns > li")
    problem = page.locator("#demo-editor-error")
    next_role = page.locator("#demo-next-role")

    # Blank start, no draft model: the user speaks first and no draft panel is shown.
    expect(next_role).to_have_text("User")
    expect(page.locator("#demo-draft")).to_have_count(0)
    editor.press("Control+Enter")
    expect(problem).to_have_text("A turn cannot be empty.")
    editor.fill("<b>Hi</b> there")
    editor.press("Control+Enter")
    expect(turns.first.locator(".turn-body")).to_have_text("<b>Hi</b> there")
    assert page.locator("#demo-turns b").count() == 0  # text, never markup
    editor.fill("x" * 41)
    editor.press("Control+Enter")
    expect(problem).to_contain_text("the limit is 40")
    editor.fill("Hello! What can I do?")
    page.get_by_role("button", name="Add assistant turn").click()
    expect(turns).to_have_count(2)

    page.get_by_role("button", name="Edit turn 1 (user)").click()
    box = page.get_by_label("Text of turn 1 (user)")
    box.fill("Hi there")
    box.press("Control+Enter")
    expect(turns.first.locator(".turn-body")).to_have_text("Hi there")
    page.once("dialog", lambda dialog: dialog.dismiss())  # "delete turn 1 and the one after?"
    page.get_by_role("button", name="Delete turn 1 (user)").click()
    expect(turns).to_have_count(2)
    page.get_by_role("button", name="Delete turn 2 (assistant)").click()
    expect(turns).to_have_count(1)
    expect(next_role).to_have_text("Assistant")

    # The server refuses a dialogue that ends with the user, and keeps the work.
    page.get_by_role("button", name="Submit demonstration").click()
    expect(page.locator("#demo-errors")).to_contain_text("must end with an assistant turn")
    expect(turns).to_have_count(1)
    assert not Message.objects.exists()

    editor.fill("Hello!")  # left in the editor: submitted as the last turn
    page.get_by_role("button", name="Submit demonstration").click()
    expect(page.get_by_role("heading", name="Submitted")).to_be_visible()
    task = Task.objects.get(assignee=trainer)
    stored = [Message.objects.get(pk=pk) for pk in task.result["messages"]]
    assert [(m.role, m.text) for m in stored] == [("user", "Hi there"), ("assistant", "Hello!")]
    assert stored[0].conversation.source == "demonstration"


# Reloads at random moments must lose nothing the trainer typed (seeded, to be repeatable).
RELOAD_ROUNDS = 30
RELOAD_SEED = 20240611


@pytest.mark.browser
def test_reloading_at_random_moments_loses_no_character(page):
    project = ProjectFactory(slug="alpha", name="Alpha", max_message_chars=4000)
    trainer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    rng = random.Random(RELOAD_SEED)
    log_in(page, "tina", "pw-for-tests")
    page.get_by_role("button", name="Write a demonstration").click()
    editor_ready(page)
    editor = page.locator("#demo-editor")
    editor.fill("Tell me a long story.")
    editor.press("Control+Enter")
    expect(page.locator("#demo-next-role")).to_have_text("Assistant")
    typed = ""
    for round_ in range(RELOAD_ROUNDS):
        # The page shows everything typed before this reload, and typing carries on from it.
        expect(editor).to_have_value(typed)
        editor.press("Control+End")
        piece = f"r{round_}-{rng.randrange(1000)} "
        page.keyboard.type(piece, delay=0)
        typed += piece
        page.wait_for_timeout(rng.uniform(0, 3000))
        page.reload()
        editor_ready(page)
    expect(editor).to_have_value(typed)
    editor.press("Control+End")
    page.keyboard.type("end", delay=0)
    typed += "end"
    # Submitted from the keyboard, the very moment the typing ends: the autosave that typing
    # starts may rewrite the status line beside the button, and a pointer click aimed before
    # that moves the button can miss it on a loaded machine (the click is not what is tested).
    page.get_by_role("button", name="Submit demonstration").press("Enter")
    expect(page.get_by_role("heading", name="Submitted")).to_be_visible(timeout=15_000)
    task = Task.objects.get(assignee=trainer)
    asked, answered = (Message.objects.get(pk=pk) for pk in task.result["messages"])
    assert (asked.text, answered.text) == ("Tell me a long story.", typed)
