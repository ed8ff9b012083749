"""A lead finds a conversation in the data explorer, excludes a message with a reason, then
excludes a ranking and sees the set's agreement change; all with htmx, no page reload."""

import pytest

from annotations.audit import audit_log
from annotations.models import Message, Ranking
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    ProjectFactory,
    UserFactory,
    ranked_set,
    say,
    start,
    trainers,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_lead_searches_explores_and_excludes(page):
    project = ProjectFactory(slug="alpha", name="Alpha")
    lead = MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead").user
    writer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    model = ModelVersionFactory(name="tiny-policy-v1")
    prompt = start(project, "How do teapots work?", user=writer)
    draft = say(prompt, "Kettles boil water.", model=model)
    reply = say(prompt, "Teapots steep <i>leaves</i> in hot water.", user=writer, draft=draft)
    say(reply, "And how long should it steep?", user=writer)
    start(project, "Unrelated question about trains", source="prompt")
    r1, r2, r3 = trainers(project, 3, prefix="ranker")
    context = start(project, "Which reply is best?")
    replies = [say(context, f"Reply {x}", model=model) for x in "abc"]
    the_set = ranked_set(
        project,
        context,
        replies,
        [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]]), (r3, [[2], [1], [0]])],
    )

    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("link", name="Data explorer").click()
    page.wait_for_url("**/p/alpha/explore/")
    assert "3 conversations" in page.locator("#explore-results h2").inner_text()
    page.get_by_label("Search").fill("steeping")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**q=steeping**")
    results = page.locator("#explore-results")
    results.get_by_text("1 conversation").wait_for()
    results.get_by_role("link", name=f"#{prompt.conversation_id}").click()

    node = page.locator(f"#message-{reply.pk}")
    node.wait_for()
    assert "Teapots steep <i>leaves</i> in hot water." in node.inner_text()  # shown as text
    assert "edit distance 3" in node.inner_text()
    # The tree indents each turn by its depth (data-depth and explorer.css, no style attribute).
    indents = [
        page.locator(f"#message-{m.pk}").evaluate("el => el.getBoundingClientRect().left")
        for m in (prompt, reply)
    ]
    assert indents[1] > indents[0]
    node.get_by_text("Exclude from exports").click()
    node.get_by_label("Reason").fill("Copied from a web page")
    node.get_by_role("button", name="Exclude this message").click()
    page.locator(f"#message-{reply.pk}.is-excluded").wait_for()
    assert "Copied from a web page" in page.locator(f"#message-{reply.pk}").inner_text()
    assert Message.objects.get(pk=reply.pk).is_excluded
    assert audit_log(project).get().actor == lead
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-explorer-tree.png"), full_page=True)

    page.get_by_role("link", name="Ranking sets").click()
    page.wait_for_url("**/p/alpha/explore/sets/")
    # A refused filter shows its error in place of the results (a 400 swapped in by htmx).
    page.get_by_label("Agreement from").fill("0.8")
    page.get_by_label("Agreement to").fill("0.2")
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("Agreement to: The upper bound is below the lower bound.").wait_for()
    page.get_by_label("Agreement from").fill("")
    page.get_by_label("Agreement to").fill("")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name=f"Set {the_set.pk}").click()
    rankings = page.locator("#set-rankings")
    assert "Agreement of the set: 0.33" in rankings.inner_text()
    dissent = page.locator(f"#ranking-{Ranking.objects.get(annotator=r3).pk}")
    dissent.get_by_text("Exclude this ranking").click()
    dissent.get_by_label("Reason").fill("Ranked without reading")
    dissent.get_by_role("button", name="Exclude from exports and the consensus").click()
    page.get_by_text("Agreement of the set: 1.00").wait_for()
    assert "Ranking excluded" in page.locator("#set-rankings").inner_text()
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-explorer-set.png"), full_page=True)
    the_set.refresh_from_db()
    assert the_set.agreement == 1.0
