"""One registry mechanism for rewards, advantages, losses, readers and CLI commands.

Registering a name twice is an error; looking up an unknown name lists the known ones
(:class:`timegrpo.errors.UnknownNameError`, a ``KeyError`` the command line reports in one line).

>>> losses = Registry("loss")
>>> @losses.register("double")
... def double(x):
...     return 2 * x
>>> losses.get("double")(3)
6
>>> losses.get("triple")
Traceback (most recent call last):
...
timegrpo.errors.UnknownNameError: unknown loss 'triple'; known: double
>>> "double" in losses, losses.names()
(True, ['double'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from timegrpo.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with clear errors (``kind`` names what is registered, for messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` returns a decorator."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
