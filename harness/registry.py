"""Name -> builder registries for methods, models and datasets (timm style).

A registry maps a name to a builder (a class or function) with a one-line description. Builders are
added with the ``register`` decorator; third-party ones also come in through the entry-point groups
``harness.methods``, ``harness.models`` and ``harness.datasets`` (the built-in ones are declared there too),
each loaded the first time its name is looked up. A registry may also hold a :class:`Namespace`: names under
a prefix resolved on demand (``torchvision.resnet18``), without listing every one of them.
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


@dataclass(frozen=True)
class Namespace(Generic[T]):
    """Names ``<prefix><name>`` resolved on demand: ``names()`` lists what exists (for did-you-mean and
    ``harness list``), ``resolve(name)`` gives the entry of one of them (``name`` without the prefix)."""

    prefix: str
    kind: str  # what a name of it is, in messages: "torchvision architecture"
    description: str
    names: Callable[[], list[str]]
    resolve: Callable[[str], Entry[T]]


class Registry(Generic[T]):
    """A named collection of builders with decorator registration and optional entry points."""

    def __init__(self, kind: str, entry_point_group: str | None = None, coerce: Callable[[str, Any], T] | None = None):
        self.kind = kind
        self.group = entry_point_group
        self.coerce = coerce  # turns what an entry point names into a builder (or raises TypeError: why not)
        self._entries: dict[str, Entry[T]] = {}
        self._eps: dict[str, EntryPoint] | None = None
        self.namespaces: dict[str, Namespace[T]] = {}
        self._resolved: dict[str, Entry[T]] = {}  # names of a namespace looked up so far

    def add_namespace(self, namespace: Namespace[T]) -> None:
        """Resolve names starting with ``namespace.prefix`` through it."""
        self.namespaces[namespace.prefix] = namespace

    def _namespace_of(self, name: str) -> Namespace[T] | None:
        return next((ns for p, ns in self.namespaces.items() if name.startswith(p)), None)

    def _resolve(self, name: str) -> Entry[T] | None:
        """The entry of a namespaced name (cached); None for a name of no namespace. Raises
        :class:`UnknownNameError` (suggestions among the namespace's names) for one that does not exist."""
        if name in self._resolved:
            return self._resolved[name]
        ns = self._namespace_of(name)
        if ns is None:
            return None
        rest = name[len(ns.prefix) :]
        known = ns.names()
        if rest not in known:
            raise UnknownNameError(ns.kind, name, [ns.prefix + n for n in known])
        self._resolved[name] = entry = ns.resolve(rest)
        return entry

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
            if name not in self._entries and self.coerce is not None:
                obj = self.coerce(name, obj)
        except Exception as exc:  # a broken plugin breaks only its own name
            raise ImportError(f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {exc}") from exc
        if name not in self._entries:
            self.add(name, obj)

    def get(self, name: str) -> T:
        return self.entry(name).builder

    def entry(self, name: str) -> Entry[T]:
        """The entry of a name (builder and description), its plugin loaded; raises :class:`UnknownNameError`."""
        if name not in self._entries:
            self._load(name)
        if name in self._entries:
            return self._entries[name]
        resolved = self._resolve(name)
        if resolved is None:
            raise UnknownNameError(self.kind, name, self.names() + [f"{p}<name>" for p in self.namespaces])
        return resolved

    def __contains__(self, name: object) -> bool:
        if name in self._entries or name in self._entry_points():
            return True
        ns = self._namespace_of(str(name))
        return ns is not None and str(name)[len(ns.prefix) :] in ns.names()

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (entry points included) matching a shell-style pattern, sorted. A namespace's names
        are included only when the pattern names its prefix (``torchvision.*``): there may be many."""
        every = set(self._entries) | set(self._entry_points())
        for prefix, ns in self.namespaces.items():
            if pattern.startswith(prefix):
                every |= {prefix + n for n in ns.names()}
        return sorted(n for n in every if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> Iterator[Entry[T]]:
        """Entries matching a pattern, plugins loaded; one that fails to load is shown with its error."""
        for n in self.names(pattern):
            try:
                entry = self.entry(n)
            except ImportError as exc:
                yield Entry(n, None, f"(failed to load: {exc.__cause__})")  # type: ignore[arg-type]
                continue
            yield entry


def _model_builder(name: str, obj: Any) -> Callable[..., Any]:
    if not callable(obj):
        raise TypeError(f"a harness.models entry point names a model builder (a callable), got {type(obj).__name__}")
    return obj


def _dataset_spec(name: str, obj: Any) -> Any:
    """What a ``harness.datasets`` entry point names: a ``DatasetSpec``, or a loader decorated with
    ``harness.register_dataset`` (which carries its spec); registered under the entry point's name."""
    import dataclasses

    from harness.data import DatasetSpec

    spec = obj if isinstance(obj, DatasetSpec) else getattr(obj, "dataset_spec", None)
    if not isinstance(spec, DatasetSpec):
        raise TypeError(
            "a harness.datasets entry point names a loader decorated with harness.register_dataset(...) "
            f"or a harness.data.DatasetSpec, got {type(obj).__name__}"
        )
    return spec if spec.name == name else dataclasses.replace(spec, name=name)


METHODS: Registry[Any] = Registry("method", "harness.methods")
MODELS: Registry[Callable[..., Any]] = Registry("model", "harness.models", _model_builder)
DATASETS: Registry[Any] = Registry("dataset", "harness.datasets", _dataset_spec)  # harness.data.DatasetSpec entries

register_method = METHODS.register
register_model = MODELS.register
