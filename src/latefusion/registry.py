"""A name -> factory table, so that a new dataset, encoder or method is one file that registers itself."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError):
    """Raised for a name no entry was registered under; the message lists the close matches."""


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._options: dict[str, type | None] = {}

    def register(self, name: str, defaults: dict[str, Any] | None = None, options: type | None = None) -> Callable[[T], T]:
        """`defaults`: run-config values that suit this entry (a user's config overrides them). `options`:
        the model (a config Section) its options are validated with, so that a config naming this entry
        is checked when it is resolved, before any work (None: checked by the entry itself)."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            self._defaults[name] = defaults or {}
            self._options[name] = options
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}."
                + did_you_mean(name, list(self._entries))
            )
        return self._entries[name]

    def defaults(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._defaults[name]

    def options(self, name: str) -> type | None:
        self.get(name)
        return self._options[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
