"""A small generic registry: register once, get by name with "did you mean" suggestions."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from factory.errors import NotFoundError

T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Names -> objects. A duplicate name is an error; an unknown name suggests the closest one."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise NotFoundError(
                f"Unknown {self.kind} '{name}'.{suggest(name, self.names())}",
                fix=f"Use one of: {', '.join(self.names())}.",
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
