"""Whether a task page shows the project's guidelines open: on a user's first visit only."""

from __future__ import annotations

from django.http import HttpRequest


def first_guidelines_visit(request: HttpRequest, project_id: int, kind: str) -> bool:
    """True the first time the user opens a task of `kind` in the project (in this session):
    the guidelines start open then, and folded afterwards."""
    key = f"{kind}_guidelines_seen"
    seen = request.session.get(key, [])
    if project_id in seen:
        return False
    request.session[key] = [*seen, project_id]
    return True
