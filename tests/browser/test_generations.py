"""An engineer asks for replies in the browser; a real worker writes them; the page updates."""

import pytest

from tests.browser.conftest import log_in
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import GenerationRequest

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_generation_progress_swaps_in_the_replies(page, start_celery_worker, tiny_model_paths):
    model = ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))
    project = ProjectFactory(slug="alpha", name="Alpha", draft_model=model)
    project.candidate_models.add(model)
    MembershipFactory(project=project, user=UserFactory(username="eve"), role="engineer")
    start_celery_worker()

    log_in(page, "eve", "pw-for-tests")
    page.goto("/p/alpha/generations/")
    page.get_by_label("Prompt").fill("How do I keep <b>basil</b> alive?")
    page.get_by_label("Replies (n)").fill("2")
    page.get_by_role("button", name="Queue request").click()

    # No reload: the fragment polls until the worker is done, then shows the replies.
    status = page.locator("[data-state]").first
    status.wait_for()
    page.locator("[data-state='done']").first.wait_for(timeout=90_000)
    request = GenerationRequest.objects.get()
    assert request.state == "done" and request.outputs.count() == 2
    for output in request.outputs.all():
        assert output.message.text[:20] in page.locator("[data-state='done']").first.inner_text()
    # The prompt is shown as text, never as markup.
    assert page.locator("[data-state='done'] b").count() == 0
