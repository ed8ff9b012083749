"""The ranking pages: claim, show, submit as a form, errors on the page, skip, autosave, access."""

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotations.models import Ranking, RankingSet
from labelling.comparisons import ranking_set_requests
from labelling.models import Task, TaskSkip
from labelling.services import task_leases_expire
from tests.factories import MembershipFactory, UserFactory, candidate_ids, make_ranking_set

pytestmark = pytest.mark.django_db


def claimed(client, project) -> Task:
    response = client.post(reverse("rank-next", args=[project.slug]))
    assert response.status_code == 302
    task_id = int(re.search(r"/tasks/(\d+)/rank$", response["Location"]).group(1))
    return Task.objects.get(pk=task_id)


def page_of(client, task) -> str:
    response = client.get(reverse("rank-task", args=[task.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_rank_replies_button_for_members_who_annotate(client, project, trainer, engineer):
    client.force_login(trainer)
    action = reverse("rank-next", args=["alpha"])
    assert action in client.get(reverse("project-detail", args=["alpha"])).content.decode()
    assert action in client.get(reverse("home")).content.decode()
    client.force_login(engineer)
    assert action not in client.get(reverse("project-detail", args=["alpha"])).content.decode()
    assert action not in client.get(reverse("home")).content.decode()


def test_claim_then_the_page_shows_context_and_every_candidate(client, project, trainer):
    long_text = "A long reply. " * 400  # shown in full: never cut on the server
    ranking_set = make_ranking_set(project, turns=3, texts=["First", "Second", long_text, "Last"])
    client.force_login(trainer)
    task = claimed(client, project)
    assert task.ranking_set == ranking_set and task.assignee == trainer

    page = page_of(client, task)
    assert "Turn 1 (user)" in page and "Turn 3 (user)" in page
    assert '<details class="rank-earlier">' not in page  # three turns: all open
    for text in ("First", "Second", long_text, "Last"):
        assert f">{text}</div>" in page
    for pk in candidate_ids(ranking_set):
        assert f'data-id="{pk}"' in page
        assert f'name="flag-{pk}" value="harmful"' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'name="all_bad"' in page and 'name="rewrite"' in page
    assert "vendor/sortablejs/Sortable.min.js" in page and "js/rank.js" in page
    # The hidden order matches the cards as shown, so a plain form post is a valid ranking.
    shown = [int(pk) for pk in re.findall(r'<li class="candidate[^"]*"[^>]*data-id="(\d+)"', page)]
    order = json.loads(re.search(r'name="order" id="rank-order" value="([^"]+)"', page)[1]
                       .replace("&quot;", '"'))  # fmt: skip
    assert order == [[pk] for pk in shown]


def test_long_conversations_fold_all_but_the_last_two_turns(client, project, trainer):
    make_ranking_set(project, turns=7)
    client.force_login(trainer)
    page = page_of(client, claimed(client, project))
    earlier, _, latest = page.partition("</details>")
    assert "Show 5 earlier turns" in earlier
    assert all(f"Turn {n} " in earlier for n in range(1, 6))
    assert "Turn 6 (assistant)" in latest and "Turn 7 (user)" in latest


def test_candidate_and_context_text_is_escaped(client, project, trainer):
    ranking_set = make_ranking_set(project, texts=["<script>alert(1)</script>", "b", "c", "d"])
    ranking_set.context.text = "<img src=x onerror=alert(2)>"
    ranking_set.context.save(update_fields=["text"])
    client.force_login(trainer)
    page = page_of(client, claimed(client, project))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_submitting_the_form_stores_the_ranking_and_opens_the_next_set(client, project, trainer):
    ranking_set = make_ranking_set(project)
    following = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    client.force_login(trainer)
    task = claimed(client, project)
    response = client.post(
        reverse("rank-task", args=[task.pk]),
        {
            "order": json.dumps([[c], [a, b], [d]]),
            f"flag-{d}": ["harmful", "pii"],
            "all_bad": "on",
            "rewrite": "A better reply.\nOn two lines.",
            "time_spent_ms": "65000",
            "then": "next",
        },
    )
    ranking = Ranking.objects.get()
    assert ranking.order == [[c], [a, b], [d]]
    assert ranking.flags == {str(d): ["harmful", "pii"]}
    assert ranking.all_bad is True and ranking.time_spent_ms == 65000
    assert ranking.rewrite.text == "A better reply.\nOn two lines."
    assert Task.objects.get(pk=task.pk).state == "done"
    next_task = Task.objects.get(assignee=trainer, state="assigned")
    assert next_task.ranking_set == following
    assert response.status_code == 302
    assert response["Location"] == reverse("rank-task", args=[next_task.pk])


def test_submit_and_stop_goes_back_to_the_project(client, project, trainer):
    ranking_set = make_ranking_set(project)
    make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    order = json.dumps([[i] for i in candidate_ids(ranking_set)])
    response = client.post(
        reverse("rank-task", args=[task.pk]), {"order": order, "then": "stop"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("project-detail", args=["alpha"])
    assert "Ranking saved" in response.content.decode()
    assert not Task.objects.filter(assignee=trainer, state="assigned").exists()


def test_posting_twice_stores_one_ranking(client, project, trainer):
    ranking_set = make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    body = {"order": json.dumps([[i] for i in candidate_ids(ranking_set)]), "rewrite": "Mine."}
    first = client.post(reverse("rank-task", args=[task.pk]), body)
    second = client.post(reverse("rank-task", args=[task.pk]), body)
    assert first.status_code == second.status_code == 302
    assert Ranking.objects.count() == 1
    assert Ranking.objects.get().rewrite.text == "Mine."


def test_a_bad_order_shows_the_error_and_keeps_the_input(client, project, trainer):
    ranking_set = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    client.force_login(trainer)
    task = claimed(client, project)
    response = client.post(
        reverse("rank-task", args=[task.pk]),
        {"order": json.dumps([[a], [b]]), f"flag-{b}": "untruthful", "rewrite": "Keep me <b>"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "The ranking was not saved." in page
    assert "Order: The order must rank each" in page and f"missing {c}, {d}" in page
    assert "Keep me &lt;b&gt;</textarea>" in page
    assert f'name="flag-{b}" value="untruthful" checked' in page
    assert Ranking.objects.count() == 0
    assert Task.objects.get(pk=task.pk).state == "assigned"


def test_an_unreadable_order_is_an_error_on_the_page(client, project, trainer):
    make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    response = client.post(reverse("rank-task", args=[task.pk]), {"order": "[[1],"})
    assert response.status_code == 400
    assert "could not be read" in response.content.decode()


def test_form_posts_need_the_csrf_token(project, trainer):
    ranking_set = make_ranking_set(project)
    client = Client(enforce_csrf_checks=True)
    client.force_login(trainer)
    assert client.post(reverse("rank-next", args=["alpha"])).status_code == 403
    page = client.get(reverse("project-detail", args=["alpha"])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    response = client.post(reverse("rank-next", args=["alpha"]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    task = Task.objects.get(assignee=trainer)
    order = json.dumps([[i] for i in candidate_ids(ranking_set)])
    assert client.post(reverse("rank-task", args=[task.pk]), {"order": order}).status_code == 403
    assert Ranking.objects.count() == 0


def test_who_may_open_a_ranking_page(client, project, trainer, engineer, outsider):
    make_ranking_set(project)
    colleague = MembershipFactory(project=project, user=UserFactory(username="cole")).user
    client.force_login(trainer)
    task = claimed(client, project)
    url = reverse("rank-task", args=[task.pk])

    assert client.get(url).status_code == 200
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert client.post(reverse("rank-next", args=["alpha"])).status_code == 404
    client.force_login(engineer)  # a member whose role does not annotate
    assert client.get(url).status_code == 403
    assert client.post(reverse("rank-next", args=["alpha"])).status_code == 403
    client.force_login(colleague)  # may annotate, but this task is someone else's
    response = client.get(url)
    assert response.status_code == 409 and "not yours to rank" in response.content.decode()
    assert client.get(reverse("rank-task", args=[999999])).status_code == 404
    demonstration = Task.objects.create(project=project, kind=Task.Kind.DEMONSTRATION)
    assert client.get(reverse("rank-task", args=[demonstration.pk])).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_claiming_is_a_post(client, project, trainer):
    make_ranking_set(project)
    client.force_login(trainer)
    assert client.get(reverse("rank-next", args=["alpha"])).status_code == 405
    assert not Task.objects.filter(assignee=trainer).exists()


def test_nothing_to_rank_says_so(client, project, trainer):
    client.force_login(trainer)
    response = client.post(reverse("rank-next", args=["alpha"]), follow=True)
    # To the trainer's home, whose ranking queue says why nothing is waiting.
    assert response.redirect_chain[-1][0] == reverse("trainer-home", args=["alpha"])
    assert "No sets are waiting for you" in response.content.decode()
    assert 'id="ranking-queue"' in response.content.decode()


def test_skip_gives_the_set_back_and_opens_another(client, project, trainer):
    skipped = make_ranking_set(project)
    other = make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    assert task.ranking_set == skipped
    response = client.post(reverse("rank-skip", args=[task.pk]), {"order": "ignored"})
    assert TaskSkip.objects.filter(task=task, user=trainer).exists()
    assert Task.objects.get(pk=task.pk).state == "open"
    following = Task.objects.get(assignee=trainer, state="assigned")
    assert following.ranking_set == other
    assert response["Location"] == reverse("rank-task", args=[following.pk])


def test_autosave_keeps_the_work_renews_the_lease_and_restores_it(client, project, trainer):
    ranking_set = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    client.force_login(trainer)
    task = claimed(client, project)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=90))
    work = {
        "order": [[d], [b, a], [c]],
        "flags": {str(c): ["pii"]},
        "all_bad": True,
        "rewrite": "Half-written",
        "elapsed_ms": 30000,
    }
    response = client.post(
        reverse("rank-autosave", args=[task.pk]), json.dumps(work), content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["stored"]
    task.refresh_from_db()
    assert task.autosave == {**work, "user": trainer.pk}
    assert task.lease_expires_at > timezone.now() + timedelta(minutes=10)

    page = page_of(client, task)  # a reload puts the work back
    shown = [int(pk) for pk in re.findall(r'<li class="candidate[^"]*"[^>]*data-id="(\d+)"', page)]
    assert shown == [d, b, a, c]
    assert re.search(rf'data-id="{a}"[^>]*data-tied="1"', page)
    assert f'name="flag-{c}" value="pii" checked' in page
    assert 'name="all_bad" checked' in page and ">Half-written</textarea>" in page
    assert 'data-elapsed-ms="30000"' in page


def test_autosave_of_a_task_not_held_is_a_409(client, project, trainer):
    make_ranking_set(project)
    colleague = MembershipFactory(project=project, user=UserFactory(username="cole")).user
    client.force_login(trainer)
    task = claimed(client, project)
    client.force_login(colleague)
    response = client.post(
        reverse("rank-autosave", args=[task.pk]), "{}", content_type="application/json"
    )
    assert response.status_code == 409 and response.json()["code"] == "task_not_held"
    assert Task.objects.get(pk=task.pk).autosave == {}


def test_another_trainers_autosave_is_not_shown(client, project, trainer):
    project.keep_autosave_on_expiry = True  # meant for demonstrations; a ranking starts clean
    project.save(update_fields=["keep_autosave_on_expiry"])
    ranking_set = make_ranking_set(project, needed=1)
    a, b, c, d = candidate_ids(ranking_set)
    previous = MembershipFactory(project=project, user=UserFactory(username="prev")).user
    client.force_login(previous)
    task = claimed(client, project)
    work = {"order": [[d], [c], [b], [a]], "flags": {str(a): ["pii"]}, "rewrite": "Theirs"}
    client.post(
        reverse("rank-autosave", args=[task.pk]), json.dumps(work), content_type="application/json"
    )
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    task_leases_expire()
    assert Task.objects.get(pk=task.pk).autosave["rewrite"] == "Theirs"  # kept by the project

    client.force_login(trainer)
    assert claimed(client, project) == task
    page = page_of(client, task)
    assert ">Theirs<" not in page and "checked>" not in page


def test_a_submit_after_the_lease_ran_out_hands_back_the_rewrite(client, project, trainer):
    ranking_set = make_ranking_set(project, needed=1)
    client.force_login(trainer)
    task = claimed(client, project)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    task_leases_expire()
    order = json.dumps([[i] for i in candidate_ids(ranking_set)])
    response = client.post(
        reverse("rank-task", args=[task.pk]), {"order": order, "rewrite": "My careful reply"}
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert "not yours to rank" in page and ">My careful reply</textarea>" in page
    assert Ranking.objects.count() == 0


def test_lead_starts_a_ranking_set_from_the_project_page(client, project, lead, trainer):
    from annotations.models import RankingSet
    from annotations.services import conversation_start
    from tests.factories import ModelVersionFactory

    model = ModelVersionFactory(name="cand")
    project.candidate_models.add(model)
    conversation_start(project=project, text="A prompt to compare replies to", source="prompt")

    client.force_login(trainer)
    assert client.post(f"/p/{project.slug}/comparisons/new").status_code == 403
    assert not RankingSet.objects.exists()

    client.force_login(lead)
    response = client.post(f"/p/{project.slug}/comparisons/new", follow=True)
    ranking_set = RankingSet.objects.get()
    assert ranking_set.state == "sampling"
    assert ranking_set_requests(ranking_set).count() == 1
    assert "is sampling 4 candidates" in response.content.decode()
    assert client.get(f"/p/{project.slug}/comparisons/new").status_code == 405


def test_a_refused_autosave_names_the_field_as_the_api_does(client, project, trainer):
    make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    url = reverse("rank-autosave", args=[task.pk])
    response = client.post(url, "[[1],", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"data": ["Malformed JSON."]}
    response = client.post(url, "[]", content_type="application/json")
    assert response.json() == {"non_field_errors": ["Autosaved data must be an object."]}


RANKING_GUIDELINES = (
    "# Rules\n\nBe kind.\n\n## Writing demonstrations\n\nPlay both sides.\n\n"
    "## When ranking replies\n\nOrder them best first."
)


def _rank_guidelines(page: str) -> str:
    start = page.index('<details class="rank-guidelines"')
    return page[start : page.index("</details>", page.index("guidelines-all", start))]


def test_the_guidelines_for_ranking_open_on_the_first_visit_then_fold(client, project, trainer):
    project.guidelines = RANKING_GUIDELINES
    project.save(update_fields=["guidelines"])
    make_ranking_set(project)
    client.force_login(trainer)
    task = claimed(client, project)
    part = _rank_guidelines(page_of(client, task))
    assert part.startswith('<details class="rank-guidelines" id="rank-guidelines" open>')
    assert "Guidelines for ranking" in part
    assert "Order them best first." in part and "Be kind." in part
    # The demonstration section is only in the nested "All the project's guidelines".
    cut = part[: part.index("guidelines-all")]
    assert "Play both sides." not in cut and "Play both sides." in part
    # Folded on the next visit; the demonstration page keeps its own first visit.
    assert " open>" not in _rank_guidelines(page_of(client, task)).split("\n")[0]
    assert client.session["ranking_guidelines_seen"] == [project.pk]
    assert "demonstration_guidelines_seen" not in client.session


def test_the_lead_is_told_the_sets_own_k(client, project, lead, monkeypatch):
    from annotations.models import Project
    from annotations.services import conversation_start
    from labelling.views import rankings as ranking_views
    from tests.factories import ModelVersionFactory

    project.candidate_models.add(ModelVersionFactory(name="cand"))
    conversation_start(project=project, text="A prompt to compare replies to", source="prompt")
    started = ranking_views.comparison_create

    def k_changed_meanwhile(**kwargs):
        # Another lead sets K = 6 after this request read the project, before the set starts.
        Project.objects.filter(pk=project.pk).update(replies_per_set=6)
        return started(**kwargs)

    monkeypatch.setattr(ranking_views, "comparison_create", k_changed_meanwhile)
    client.force_login(lead)
    response = client.post(f"/p/{project.slug}/comparisons/new", follow=True)
    ranking_set = RankingSet.objects.get()
    assert ranking_set.replies_wanted == 6
    assert f"Ranking set {ranking_set.pk} is sampling 6 candidates" in response.content.decode()
