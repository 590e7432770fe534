"""Name -> builder registries for methods, models and datasets (timm style).

A registry maps a name to a builder (a class or function) with a one-line description. Builders are
added with the ``register`` decorator; third-party methods also come in through the entry-point group
``harness.methods`` and are loaded the first time any method is looked up.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from harness.config import did_you_mean

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry has; the message carries did-you-mean suggestions."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        self.suggestion = did_you_mean(name, known)
        super().__init__(f"unknown {kind} {name!r}{self.suggestion}; known: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    builder: T
    description: str


class Registry(Generic[T]):
    """A named collection of builders with decorator registration and optional entry points."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._eps: dict[str, EntryPoint] | None = None

    def register(self, name: str | None = None, description: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@MODELS.register("lenet5")`` registers the decorated builder under that name."""

        def decorate(builder: T) -> T:
            self.add(name or getattr(builder, "name", None) or builder.__name__, builder, description)  # type: ignore[attr-defined]
            return builder

        return decorate

    def add(self, name: str, builder: T, description: str | None = None) -> None:
        existing = self._entries.get(name)
        if existing is not None and existing.builder is not builder:
            raise ValueError(f"{self.kind} {name!r} is already registered by {existing.builder!r}")
        if isinstance(builder, type) and getattr(builder, "name", None) == "":
            builder.name = name  # type: ignore[attr-defined]  # a Method subclass learns the name it is registered under
        doc = description or (getattr(builder, "__doc__", None) or "").strip().splitlines()
        if isinstance(doc, list):
            doc = doc[0] if doc else ""
        self._entries[name] = Entry(name, builder, doc)

    def _entry_points(self) -> dict[str, EntryPoint]:
        """Entry points of the group not yet registered, discovered (not imported) once."""
        if self._eps is None:
            self._eps = {ep.name: ep for ep in entry_points(group=self.group)} if self.group else {}
        return {n: ep for n, ep in self._eps.items() if n not in self._entries}

    def _load(self, name: str) -> None:
        ep = self._entry_points().get(name)
        if ep is None:
            return
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin breaks only its own name
            raise ImportError(f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {exc}") from exc
        if name not in self._entries:
            self.add(name, obj)

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._load(name)
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names())
        return self._entries[name].builder

    def entry(self, name: str) -> Entry[T]:
        """The entry of a name (builder and description), its plugin loaded; raises :class:`UnknownNameError`."""
        self.get(name)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._entry_points()

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (entry points included) matching a shell-style pattern, sorted."""
        every = set(self._entries) | set(self._entry_points())
        return sorted(n for n in every if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> Iterator[Entry[T]]:
        """Entries matching a pattern, plugins loaded; one that fails to load is shown with its error."""
        for n in self.names(pattern):
            try:
                self._load(n)
            except ImportError as exc:
                yield Entry(n, None, f"(failed to load: {exc.__cause__})")  # type: ignore[arg-type]
                continue
            yield self._entries[n]


METHODS: Registry[Any] = Registry("method", "harness.methods")
MODELS: Registry[Callable[..., Any]] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")  # harness.data.DatasetSpec entries

register_method = METHODS.register
register_model = MODELS.register
register_dataset = DATASETS.register
