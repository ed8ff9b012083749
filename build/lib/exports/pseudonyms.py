"""Pseudonymous annotator ids: a keyed hash per project, never a username, e-mail or database id."""

import hmac

from django.conf import settings

PREFIX = "ann-"


def pseudonym_key() -> bytes:
    """The export key: PARLEY_PSEUDONYM_KEY, else derived from SECRET_KEY.

    Changing it changes every pseudonym, so give it a value of its own in production.
    """
    key = settings.PARLEY.get("PSEUDONYM_KEY") or f"parley-pseudonyms:{settings.SECRET_KEY}"
    return key.encode()


class Pseudonyms:
    """Maps user ids of one project to stable pseudonyms (cached: exports ask millions of times)."""

    def __init__(self, project_id: int, key: bytes | None = None) -> None:
        self._key = hmac.new(key or pseudonym_key(), f"project:{project_id}".encode(), "sha256")
        self._cache: dict[int, str] = {}

    def __call__(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        name = self._cache.get(user_id)
        if name is None:
            mac = self._key.copy()
            mac.update(f"user:{user_id}".encode())
            name = PREFIX + mac.hexdigest()[:16]
            self._cache[user_id] = name
        return name


def is_pseudonym(value: str) -> bool:
    return value.startswith(PREFIX) and len(value) == len(PREFIX) + 16


__all__ = ["PREFIX", "Pseudonyms", "is_pseudonym", "pseudonym_key"]
