"""Paging the data explorer's lists: a count that stops at a cap, pages past it, and a page's
rows read by their keys."""

from __future__ import annotations

from collections.abc import Callable

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from annotations.explorer import NewestFirst

# How far a list is counted. Past it the page says "1,000+": counting every match of a word in
# most conversations read each of them once more, for a figure nobody pages through.
COUNT_CAP = 1_000
# A search is read newest first (`NewestFirst`) when the rows it needs are among the newest
# DENSE times as many rows of the list without it: at least one row in DENSE matches there.
# FIRST_LOOK of them are looked for first, so that a rare word costs a few rows' text vectors.
DENSE = 2
FIRST_LOOK = 8
# Rows no list reaches: a typed page number past them is past the end (PostgreSQL's OFFSET is a
# bigint).
MAX_OFFSET = 2**62


class ExplorerPage(Page):
    """A page that knows whether a row follows it (its keys were read with one more)."""

    def __init__(self, object_list, number: int, paginator: CappedPaginator, *, followed: bool):
        super().__init__(object_list, number, paginator)
        self.followed = followed

    def has_next(self) -> bool:
        if self.paginator.capped:
            return self.followed
        return super().has_next()


class CappedPaginator(Paginator):
    """Pages a filtered list without counting it past `cap`, reading each page's keys first.

    The count reads at most cap + 1 keys. A list longer than the cap is `capped`: it says
    "1,000+" and has no known last page; its pages go on by number, in the list's order, for as
    long as rows follow (Next shows while one does). Only a typed page number can land past the
    end of a capped list: the list is then counted in full, once, to show its last page.

    A search (`newest_first`) whose first cap + 1 rows are found among the list's newest rows
    (`leading`) is read that way; its pages past them, and every other search, through the
    search index.

    The page's keys come from the filtered list (an index scan, however deep the page); only
    those rows get `summarise`'s per-row subqueries, and the filters (a search above all) are
    not evaluated a second time.
    """

    def __init__(
        self,
        object_list,
        per_page: int,
        *,
        summarise: Callable[[QuerySet], QuerySet],
        cap: int | None = None,
        newest_first: NewestFirst | None = None,
    ) -> None:
        super().__init__(object_list, per_page)
        self.summarise = summarise
        self.cap = COUNT_CAP if cap is None else cap
        self.newest_first = newest_first
        self.counted_in_full = False

    @cached_property
    def leading(self) -> list[int] | None:
        """The keys of the list's first cap + 1 rows when a search matches that many among
        the newest DENSE * (cap + 1) rows without it, read newest first; else None.

        FIRST_LOOK rows are looked for first, among twice as many: a search whose matches are
        rare among the newest rows costs those, then is read through its index.
        """
        if self.newest_first is None:
            return None
        if len(self._among_newest(FIRST_LOOK)) < FIRST_LOOK:
            return None
        keys = self._among_newest(self.cap + 1)
        return keys if len(keys) > self.cap else None

    def _among_newest(self, needed: int) -> list[int]:
        rows = self.newest_first.among_newest(DENSE * needed)
        return list(rows.values_list("pk", flat=True)[:needed])

    @cached_property
    def count(self) -> int:
        """The number of rows, up to cap + 1 (in no particular order: any cap + 1 will do)."""
        if self.leading is not None:
            return self.cap + 1
        if isinstance(self.object_list, QuerySet):
            return self.object_list.order_by()[: self.cap + 1].count()
        return min(len(self.object_list), self.cap + 1)

    @property
    def capped(self) -> bool:
        """Whether the list holds more than `cap` rows, and how many more is unknown."""
        return not self.counted_in_full and self.count > self.cap

    @property
    def total(self) -> str:
        """What the page says of the list's length: the count, or "1,000+" once capped."""
        return f"{self.cap:,}+" if self.capped else str(self.count)

    @property
    def num_pages(self) -> int | None:
        """The number of pages; None while the list is capped (its last page is unknown)."""
        if self.capped:
            return None
        return max(1, -(-self.count // self.per_page))

    def validate_number(self, number) -> int:
        if not self.capped:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        if (number - 1) * self.per_page >= MAX_OFFSET:
            # Past any list the database could hold (and past what its OFFSET takes).
            raise EmptyPage(self.error_messages["no_results"])
        return number

    def get_page(self, number) -> ExplorerPage:
        """The page, the first for a number that is none, the last for one out of range."""
        try:
            return self.page(self.validate_number(number))
        except PageNotAnInteger:
            return self.page(1)
        except EmptyPage:
            if self.capped:  # the last page of a capped list is unknown until it is counted
                self.count = self._full_count()
                self.counted_in_full = True
            return self.page(self.num_pages)

    def _full_count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return self.object_list.count()
        return len(self.object_list)

    def page(self, number) -> ExplorerPage:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page + 1
        if not isinstance(self.object_list, QuerySet):
            keys = found = list(self.object_list[bottom:top])
        else:
            if self.leading is not None and top <= len(self.leading):
                keys = self.leading[bottom:top]
            else:
                keys = list(self.object_list[bottom:top].values_list("pk", flat=True))
            rows = self.summarise(self.object_list.model.objects.filter(pk__in=keys)).in_bulk()
            found = [rows[pk] for pk in keys[: self.per_page] if pk in rows]
        if not keys and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        return ExplorerPage(
            found[: self.per_page], number, self, followed=len(keys) > self.per_page
        )
