"""The `<id:...>` path converter for primary keys in URLs, registered once for every app.

Django's `<int:...>` takes digits of any length, and a lookup with an integer beyond 64 bits
overflows on SQLite (a 500); an id no row can have is simply a URL that matches nothing (404).
"""

from django.urls import register_converter

from annotations.text import MAX_INT


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        pk = int(value)
        if pk > MAX_INT:
            raise ValueError("beyond 64 bits")  # the pattern does not match: 404
        return pk

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
