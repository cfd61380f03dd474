"""Pages of a list: ``?limit=&offset=`` in, ``{items, total, limit, offset, next_offset}`` out.

Offsets, not cursors: operators jump to page 7 of an exceptions queue, and
the lists are ordered by stable keys (ids, serials), so an offset names the
same rows until something is added or resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Connection, Select, func, select

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] =
        DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None

    @classmethod
    def of(cls, items: list[T], total: int, params: PageParams) -> Page[T]:
        after = params.offset + len(items)
        return cls(items=items, total=total, limit=params.limit, offset=params.offset,
                   next_offset=after if after < total else None)


def paged_rows(conn: Connection, query: Select, params: PageParams) -> tuple[list, int]:
    """(rows of this page, total rows) of an ordered ``query``."""
    total = conn.execute(select(func.count()).select_from(query.order_by(None).subquery())
                         ).scalar_one()
    rows = conn.execute(query.limit(params.limit).offset(params.offset)).all()
    return rows, int(total)
