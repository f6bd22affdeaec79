"""Name -> builder registries (backbones, losses, models): one place each, and an unknown name is an error.

A registry knows the module that fills it and imports it on first use, so a
low-level module (the configuration) can list the allowed names without
importing the modules that define them.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from padcore.errors import PadError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind, registered by name where they are defined."""

    def __init__(self, kind: str, home: str):
        self.kind, self.home = kind, home
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.home)

    def __getitem__(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise PadError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


BACKBONES: Registry[Callable] = Registry("backbone", "padcore.backbones")
REC_LOSSES: Registry[Callable] = Registry("loss", "padcore.losses")
ALIGN_LOSSES: Registry[Callable] = Registry("alignment kernel", "padcore.losses")
MODELS: Registry = Registry("model", "padcore.models")
