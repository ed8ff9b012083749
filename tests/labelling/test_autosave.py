"""Autosave from pages: a reload's late saves never wind work back, and submit takes the page's."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotations.models import Message
from labelling import demonstrations as demo
from labelling.autosave import task_open_page
from labelling.claims import task_claim_next, task_submit
from labelling.models import Task

pytestmark = pytest.mark.django_db


def _claim(project, user) -> Task:
    return task_claim_next(project=project, user=user, kind="demonstration")


def _save(task, user, editor, *, page, seq, **extra):
    data = {"turns": [], "editor": editor, "page": page, "seq": seq, **extra}
    return demo.demonstration_autosave(task_id=task.pk, user=user, data=data)


def _stored(task) -> str:
    task.refresh_from_db()
    return task.autosave["editor"]


def test_an_old_pages_late_save_is_taken_until_the_new_page_writes(project, trainer):
    task = _claim(project, trainer)
    old = task_open_page(task_id=task.pk, user=trainer).pages_opened
    assert _save(task, trainer, "Hel", page=old, seq=1).stored
    # The trainer reloads: the new page loads "Hel", then the old page's last save lands.
    new = task_open_page(task_id=task.pk, user=trainer)
    assert new.pages_opened == old + 1 and new.autosave["editor"] == "Hel"
    late = _save(task, trainer, "Hello", page=old, seq=2)
    assert late.stored and _stored(task) == "Hello"
    assert late.task.autosave_revision > new.autosave_revision  # the new page can tell
    # The new page writes (it took "Hello" and typed on); the old page's even later beacon
    # must not wind that back.
    assert _save(task, trainer, "Hello, world", page=new.pages_opened, seq=1).stored
    stale = _save(task, trainer, "Hello!", page=old, seq=3)
    assert not stale.stored and stale.task.autosave_page == new.pages_opened
    assert _stored(task) == "Hello, world"


def test_saves_of_one_page_out_of_order_keep_the_highest_sequence(project, trainer):
    task = _claim(project, trainer)
    page = task_open_page(task_id=task.pk, user=trainer).pages_opened
    assert _save(task, trainer, "abc", page=page, seq=3).stored
    overtaken = _save(task, trainer, "ab", page=page, seq=2)
    assert not overtaken.stored and overtaken.task.autosave_page == page  # nothing to tell
    assert not _save(task, trainer, "abc", page=page, seq=3).stored  # a repeat
    assert _stored(task) == "abc"
    assert _save(task, trainer, "abcd", page=page, seq=4).stored
    assert _stored(task) == "abcd"


def test_an_older_window_is_told_and_may_take_over(project, trainer):
    task = _claim(project, trainer)
    first = task_open_page(task_id=task.pk, user=trainer).pages_opened
    second = task_open_page(task_id=task.pk, user=trainer).pages_opened
    assert _save(task, trainer, "from the first", page=first, seq=1).stored
    assert _save(task, trainer, "from the second", page=second, seq=1).stored
    refused = _save(task, trainer, "first again", page=first, seq=2)
    assert not refused.stored and refused.task.autosave["editor"] == "from the second"
    # The trainer keeps the first window's text: it becomes the newest page.
    taken = _save(task, trainer, "first again", page=first, seq=3, take_over=True)
    assert taken.stored and taken.page > second and _stored(task) == "first again"
    assert not _save(task, trainer, "second again", page=second, seq=2).stored
    assert _save(task, trainer, "first on", page=taken.page, seq=4).stored


def test_a_page_number_never_given_out_is_refused(project, trainer):
    task = _claim(project, trainer)
    with pytest.raises(ValidationError) as caught:
        _save(task, trainer, "x", page=1, seq=1)
    assert "page" in caught.value.message_dict
    task_open_page(task_id=task.pk, user=trainer)
    with pytest.raises(ValidationError) as caught:
        _save(task, trainer, "x", page=1, seq=0)
    assert "seq" in caught.value.message_dict


def test_submit_after_a_stale_save_stores_what_the_page_shows(client, project, trainer):
    task = _claim(project, trainer)
    client.force_login(trainer)
    client.get(reverse("demonstration", args=[task.pk]))  # page 1
    client.get(reverse("demonstration", args=[task.pk]))  # page 2: a reload
    _save(task, trainer, "new page", page=2, seq=1)
    assert not _save(task, trainer, "old page, late", page=1, seq=9).stored
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Shown here"}]
    state = {"turns": turns, "editor": "", "page": 1, "seq": 10}  # even from the older page
    response = client.post(
        reverse("demonstration-submit", args=[task.pk]), {"state": json.dumps(state)}
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.state == Task.State.DONE
    stored = [Message.objects.get(pk=pk).text for pk in task.result["messages"]]
    assert stored == ["Hi", "Shown here"]
    # The service submit never looks at autosave revisions either.
    assert task_submit(task_id=task.pk, user=trainer, data={"turns": turns}).pk == task.pk
