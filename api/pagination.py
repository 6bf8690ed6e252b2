"""One page of a list: every list route takes `offset` and `limit` and answers with the total."""

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

MAX_LIMIT = 500
T = TypeVar("T")


class Paging(BaseModel):
    offset: int
    limit: int


def paging(
    offset: Annotated[int, Query(ge=0, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items on one page.")] = 50,
) -> Paging:
    return Paging(offset=offset, limit=limit)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


def page_of(items: Sequence[T], paging: Paging) -> Page[T]:
    return Page[T](
        items=list(items[paging.offset : paging.offset + paging.limit]),
        total=len(items),
        offset=paging.offset,
        limit=paging.limit,
    )
