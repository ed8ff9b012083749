"""A trainer ranks one set with the keyboard only and another by drag-and-drop, in Chromium."""

import random
import re

import pytest
from playwright.sync_api import expect

from annotations.models import Message, Ranking
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, make_ranking_set

pytestmark = pytest.mark.browser

# Written under var/ so test runs never touch the tracked docs/ copy; set
# PARLEY_SCREENSHOT_DIR=docs to refresh the README pictures.
SCREENSHOT = SCREENSHOT_DIR / "screenshot-ranking.png"

BASIL_TURNS = [
    "I just moved into a flat with a south-facing windowsill. Which herbs are easiest to grow "
    "indoors?",
    "Good light makes it easy. Basil, parsley, chives and mint all do well on a sunny sill; mint "
    "is the most forgiving, basil the most rewarding.",
    "I bought a basil plant from the supermarket and it is already wilting after three days.",
    "Supermarket basil is usually a dozen seedlings crammed into one pot and grown fast under "
    "ideal conditions, so wilting in the first week is common.",
    "So what should I do to keep it alive? Please keep it short.",
]
BASIL_REPLIES = [
    "Split it. Tip the pot out, tease the clump into three or four smaller bunches and repot "
    "each in fresh compost. Water from below when the top centimetre is dry, keep it on the "
    "sunny sill but out of the midday heat behind the glass, and pinch off the tops above a "
    "pair of leaves instead of picking single leaves.",
    "Basil needs water. Water it every day and it will be fine.",
    "Here are some tips:\n\n"
    "1. Light: 6–8 hours of sun a day. A south-facing sill is ideal.\n"
    "2. Water: keep the soil moist but never soggy; pour away what is left in the saucer.\n"
    "3. Space: supermarket pots are overcrowded, so divide the plants into several pots.\n"
    "4. Warmth: basil hates cold draughts; keep it above 15 °C.\n"
    "5. Harvest: pinch out the growing tips to make it bushy, and remove flower buds.\n"
    "6. Feed: once it grows again, a weak liquid feed every two weeks.\n"
    "7. Pests: check under the leaves for aphids and wipe them off with soapy water.\n"
    "8. Pot: use one with drainage holes; a decorative pot without them drowns the roots.\n"
    "9. Air: turn the pot every few days so it does not lean towards the glass.\n"
    "10. Patience: it may drop a few leaves while it settles; new growth is the sign.\n\n"
    "With these it should recover within a week or two, and you can start picking once it "
    "has six or more pairs of leaves.",
    "Unfortunately supermarket basil is bred to die within a week. Throw it away and grow it "
    "from seed instead; that is the only way to get a plant that lasts.",
]


def set_with_conversation(project, turns: list[str], replies: list[str]):
    ranking_set = make_ranking_set(project, turns=len(turns), texts=replies, needed=1)
    message = ranking_set.context
    for text in reversed(turns):  # the helper writes placeholder turns: give them real text
        Message.objects.filter(pk=message.pk).update(text=text)
        message = message.parent
    return ranking_set


def shown_ids(page) -> list[int]:
    return page.locator("#candidates > li").evaluate_all("els => els.map(e => +e.dataset.id)")


def shown_ranks(page) -> list[str]:
    return page.locator("#candidates .candidate-rank").all_inner_texts()


def test_rank_with_the_keyboard_then_with_drag_and_drop(page):
    project = ProjectFactory(slug="alpha", name="Herb garden assistant")
    MembershipFactory(project=project, user=UserFactory(username="tina"), role="trainer")
    keyboard_set = set_with_conversation(project, BASIL_TURNS, BASIL_REPLIES)
    dragged_set = set_with_conversation(
        project,
        ["Translate 'good morning' into French."],
        ["Bonjour.", "Bonsoir.", "Bon matin.", "Salut !"],
    )

    log_in(page, "tina", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("button", name="Rank replies").click()
    page.wait_for_url("**/tasks/*/rank")
    first_url = page.url

    # The conversation: the earlier turns are folded, the last two are open.
    assert page.get_by_text("Show 3 earlier turns").is_visible()
    assert page.get_by_text("So what should I do to keep it alive?").is_visible()
    assert not page.get_by_text("I just moved into a flat").is_visible()

    # ---- keyboard only: 3 then up, up; 4 then up, up; 3 then T (tie); flag the last one.
    rows = shown_ids(page)
    a, b, c, d = rows
    assert shown_ranks(page) == ["1", "2", "3", "4"]
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert shown_ids(page) == [c, a, b, d]
    page.keyboard.press("4")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert shown_ids(page) == [c, d, a, b]
    page.keyboard.press("3")
    page.keyboard.press("t")
    assert shown_ranks(page) == ["1", "2", "2", "3"]
    assert page.locator(f"#candidates > li[data-id='{a}'] .tie-chip").is_visible()
    page.keyboard.press("4")
    target = f"input[name='flag-{b}'][value='untruthful']"
    for _ in range(12):  # Tab from the selected reply to its flags
        if page.evaluate(f'document.activeElement.matches("{target}")'):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert page.locator(target).is_checked()
    page.keyboard.press("2")  # select the reply in row two again, for the picture
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # The long reply is cut with a way to read it all: Tab to "Show the whole reply", Enter.
    long_row = shown_ids(page).index(
        int(page.locator("#candidates > li:has(.expand-toggle:visible)").get_attribute("data-id"))
    )
    page.keyboard.press(str(long_row + 1))
    for _ in range(12):
        if page.evaluate('document.activeElement.matches(".expand-toggle")'):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    toggle = page.locator(".expand-toggle[aria-expanded=true]")
    assert toggle.inner_text() == "Show less"
    body = page.locator(f"#{toggle.get_attribute('aria-controls')}")
    assert body.evaluate("el => el.scrollHeight <= el.clientHeight + 1")
    assert page.get_by_text("has six or more pairs of leaves").is_visible()

    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda url: url != first_url)

    ranking = Ranking.objects.get(ranking_set=keyboard_set)
    assert ranking.order == [[c], sorted([d, a]), [b]]
    assert ranking.flags == {str(b): ["untruthful"]}
    assert ranking.time_spent_ms > 0 and ranking.all_bad is False and ranking.rewrite is None
    keyboard_set.refresh_from_db()
    assert keyboard_set.state == "complete"

    # ---- drag and drop: the last reply to the top; tie the bottom two with the mouse.
    assert page.get_by_text("Translate 'good morning' into French.").is_visible()
    rows = shown_ids(page)
    grip = page.locator(f"#candidates > li[data-id='{rows[3]}'] .candidate-grip")
    grip.evaluate("el => el.scrollIntoView({block: 'center'})")  # clear of the sticky buttons
    top = page.locator(f"#candidates > li[data-id='{rows[0]}']").bounding_box()
    start = grip.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    for step in range(1, 21):
        y = start["y"] + (top["y"] + 4 - start["y"]) * step / 20
        page.mouse.move(start["x"] + start["width"] / 2, y)
        page.wait_for_timeout(20)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert shown_ids(page) == [rows[3], rows[0], rows[1], rows[2]]
    page.locator(f"#candidates > li[data-id='{rows[2]}'] [data-action=tie]").click()
    assert shown_ranks(page) == ["1", "2", "3", "3"]
    page.get_by_label("All are bad").check()
    page.get_by_text("Write a better reply (optional)").click()
    page.get_by_label("Your reply to the conversation").fill("Bonjour ! (« good morning »)")
    page.get_by_role("button", name="Submit and stop").click()
    page.wait_for_url("**/p/alpha/")
    assert page.get_by_text("Ranking saved").is_visible()

    ranking = Ranking.objects.get(ranking_set=dragged_set)
    assert ranking.order == [[rows[3]], [rows[0]], sorted([rows[1], rows[2]])]
    assert ranking.all_bad is True
    assert ranking.rewrite.text == "Bonjour ! (« good morning »)"
    assert ranking.rewrite.parent_id == dragged_set.context_id


RANK_GUIDELINES = (
    "# How we judge replies\n\nBe fair to every reply.\n\n"
    + "\n\n".join(f"- General rule number {i}: prefer honest replies." for i in range(30))
    + "\n\n## Writing demonstrations\n\nPlay both sides of the dialogue.\n"
)


def test_on_a_laptop_screen_the_guidelines_leave_the_replies_in_view(browser, live_server):
    project = ProjectFactory(slug="alpha", name="Herb garden", guidelines=RANK_GUIDELINES)
    MembershipFactory(project=project, user=UserFactory(username="tina"), role="trainer")
    set_with_conversation(project, BASIL_TURNS, BASIL_REPLIES)
    set_with_conversation(project, ["Hi?"], ["One.", "Two.", "Three.", "Four."])
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, "tina", "pw-for-tests")
        page.goto("/p/alpha/")
        page.get_by_role("button", name="Rank replies").click()
        page.wait_for_url("**/tasks/*/rank")
        page.locator("html[data-rank-ready='true']").wait_for(state="attached")
        first_url = page.url

        # First visit: the guidelines for ranking are open, the demonstration part left out.
        guidelines = page.locator("#rank-guidelines")
        expect(guidelines).to_have_attribute("open", "")
        expect(guidelines.locator("> summary")).to_have_text("Guidelines for ranking")
        expect(guidelines.get_by_text("General rule number 0").first).to_be_visible()
        expect(page.get_by_text("Play both sides of the dialogue.")).to_be_hidden()
        # The replies are on the first screen, the first one whole, without scrolling (how many
        # more fit depends on the shuffled order: the long reply is cut at 18rem).
        assert page.evaluate("window.scrollY") == 0
        first = page.locator("#candidates > li").first.bounding_box()
        assert first["y"] >= 0 and first["y"] + first["height"] <= 768, first
        below_heading = first["y"] - page.locator("#rank-heading").bounding_box()["y"]
        assert page.locator("#candidates > li").nth(1).bounding_box()["y"] < 768
        page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-ranking-laptop.png"))
        # A change is saved, and the page says when as every page writes a moment.
        page.keyboard.press("2")
        page.keyboard.press("ArrowUp")
        saved = re.compile(r"^Saved at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        expect(page.locator("#autosave-status")).to_have_text(saved, timeout=10_000)

        # The next set: the guidelines are folded, the replies still in view.
        page.get_by_role("button", name="Submit and rank next").click()
        page.wait_for_url(lambda url: url != first_url and url.endswith("/rank"))
        expect(page.get_by_text("Hi?", exact=True)).to_be_visible()
        expect(page.locator("#rank-guidelines")).not_to_have_attribute("open", "")
        expect(page.get_by_text("General rule number 0").first).to_be_hidden()
        # Open or folded, the guidelines move no reply: they sit in the other column (the page
        # itself starts lower now, under the "Ranking saved" message).
        heading = page.locator("#rank-heading").bounding_box()["y"]
        assert page.locator("#candidates > li").first.bounding_box()["y"] - heading == below_heading
        assert page.locator("#candidates > li").first.bounding_box()["y"] < 768
    finally:
        context.close()


# Reloads at random moments must lose nothing typed in the better reply (seeded, repeatable).
RELOAD_ROUNDS = 30
RELOAD_SEED = 20240611


def test_reloading_at_random_moments_loses_no_character_of_the_rewrite(page):
    project = ProjectFactory(slug="alpha", name="Herb garden assistant", max_message_chars=4000)
    MembershipFactory(project=project, user=UserFactory(username="tina"), role="trainer")
    ranking_set = set_with_conversation(project, ["Hi?"], ["One.", "Two.", "Three.", "Four."])
    rng = random.Random(RELOAD_SEED)
    log_in(page, "tina", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("button", name="Rank replies").click()
    page.wait_for_url("**/tasks/*/rank")
    ready = page.locator("html[data-rank-ready='true']")
    ready.wait_for(state="attached")
    rewrite = page.locator("#rewrite")
    typed = ""
    for round_ in range(RELOAD_ROUNDS):
        if not rewrite.is_visible():
            page.locator(".rank-rewrite > summary").click()
        expect(rewrite).to_have_value(typed)
        rewrite.press("Control+End")
        piece = f"r{round_}-{rng.randrange(1000)} "
        page.keyboard.type(piece, delay=0)
        typed += piece
        page.wait_for_timeout(rng.uniform(0, 3000))
        page.reload()
        ready.wait_for(state="attached")
    expect(rewrite).to_have_value(typed)
    page.get_by_role("button", name="Submit and stop").click()
    page.wait_for_url("**/p/alpha/")
    ranking = Ranking.objects.get(ranking_set=ranking_set)
    assert ranking.rewrite.text == typed.strip() or ranking.rewrite.text == typed
