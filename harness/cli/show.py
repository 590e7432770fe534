"""``harness show method|model|dataset NAME``: what one registered entry is and what it takes.

A method: its description, initializations and every parameter (name, type, default, meaning, from the params
model's field descriptions or the docstrings under its fields). A model: its builder's options. A dataset: its
images and classes, and the files it needs under the data root (found or not, and where they can be had).
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.padding import Padding
from rich.text import Text

from harness.cli.common import console, fail
from harness.config import did_you_mean
from harness.registry import DATASETS, METHODS, MODELS, Registry, UnknownNameError

KINDS: dict[str, Registry[Any]] = {"method": METHODS, "model": MODELS, "dataset": DATASETS}
NOT_SET = "not set"  # a default of None: the parameter is not given
REQUIRED = "(required)"  # no default: the parameter must be given


# -- text of types, defaults and meanings (pure) -------------------------------------------------------------------
def type_text(t: Any) -> str:
    """A type annotation as a reader writes it: ``int | float | None``, ``list[str]``, ``'channels' | 'all'``."""
    origin, args = get_origin(t), get_args(t)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_text(a) for a in args)}]"
    if t is type(None):
        return "None"
    if t is inspect.Parameter.empty:
        return ""
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def bounds_text(metadata: Iterable[Any]) -> str:
    """Numeric bounds of a field (``Field(ge=1)``) as ``>= 1``; several joined by commas."""
    ops = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    return ", ".join(f"{op} {getattr(m, k)}" for m in metadata for k, op in ops if getattr(m, k, None) is not None)


def value_text(v: Any) -> str:
    """A default value as it is written in a suite (None: not set; lists and dicts as compact JSON)."""
    if v is None:
        return NOT_SET
    if isinstance(v, list | dict | tuple):
        return json.dumps(v)
    return str(v)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return REQUIRED
    return value_text(field.get_default(call_default_factory=True))


def attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under a class's fields (``x: int = 1`` then a string literal), base classes first."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] in ("pydantic", "builtins"):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (made at run time, or compiled)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for field, doc in zip(body, body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                docs[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


def parameter_rows(params: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) of each field of a method's params model."""
    fields = params.model_fields
    docs = attribute_docs(params) if any(not f.description for f in fields.values()) else {}
    rows = []
    for name, f in fields.items():
        kind = type_text(f.annotation)
        bounds = bounds_text(f.metadata)
        meaning = f.description or docs.get(name, "")
        rows.append((name, f"{kind}, {bounds}" if bounds else kind, default_text(f), meaning))
    return rows


def signature_rows(builder: Any) -> list[tuple[str, str, str]]:
    """(name, type, default) of each parameter of a model builder."""
    try:
        sig = inspect.signature(builder, eval_str=True)
    except (NameError, TypeError, ValueError):  # annotations that do not evaluate: shown as written
        sig = inspect.signature(builder)
    rows = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL or p.kind is p.VAR_KEYWORD:
            stars = "*" if p.kind is p.VAR_POSITIONAL else "**"
            rows.append((stars + p.name, type_text(p.annotation), ""))
        else:
            default = REQUIRED if p.default is p.empty else value_text(p.default)
            rows.append((p.name, type_text(p.annotation), default))
    return rows


def source_of(obj: Any) -> str:
    """Where a builder is defined: ``module.qualname``."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


# -- printing ------------------------------------------------------------------------------------------------------
def _line(text: str, indent: int = 0) -> None:
    """Plain text (never markup: ``list[int]`` is a type); on a terminal wrapped under its indent."""
    if console.soft_wrap:  # not a terminal: one line each, never wrapped (as make_console does)
        console.print(" " * indent + text, highlight=False, markup=False)
    else:
        console.print(Padding(Text(text), (0, 0, 0, indent)), highlight=False)


def _entry(name: str, kind: str, default: str, meaning: str = "") -> None:
    """One parameter: ``name  type  (default: x)``, its meaning indented below."""
    tag = "" if not default else default if default == REQUIRED else f"(default: {default})"
    _line("  ".join(x for x in (name, kind, tag) if x), 2)
    if meaning:
        _line(meaning, 6)


def _show_method(name: str, cls: Any, description: str) -> None:
    _line(f"method {name}: {description}")
    _line(f"defined in: {source_of(cls)}")
    inits = list(getattr(cls, "initializations", ()))
    if inits:
        _line(f"initializations: {inits[0]} (default), {', '.join(inits[1:])}".rstrip(", "))
    rows = parameter_rows(cls.Params)
    if not rows:
        _line("parameters: none")
        return
    _line(f"parameters (in a suite: methods: [{{name: {name}, params: {{...}}}}]; a list value is a sweep):")
    for row in rows:
        _entry(*row)


def _show_model(name: str, builder: Any, description: str) -> None:
    _line(f"model {name}: {description}")
    _line(f"defined in: {source_of(builder)}")
    doc = inspect.cleandoc(builder.__doc__ or "")
    if doc and doc.splitlines()[0] != description:
        _line(doc)
    _line("options (harness passes in_channels, num_classes and image_size from the dataset):")
    for row in signature_rows(builder):
        _entry(*row)


def _show_dataset(name: str, spec: Any, root: Path | None) -> None:
    from harness.data import default_data_root

    _line(f"dataset {name}: {spec.description}")
    size = f"{spec.image_size}x{spec.image_size}"
    padded = f" (stored smaller, zero-padded to {spec.pad_to}x{spec.pad_to})" if spec.pad_to else ""
    _line(f"images: {spec.channels} channel(s), {size}{padded}; classes: {spec.num_classes}")
    _line(f"augmentation by default: {'random crop + flip' if spec.augment else 'none'}")
    _line(f"normalization: mean {list(spec.mean)}, std {list(spec.std)}")
    files = spec.files
    if files is None:
        _line("files: none to provide")
        return
    root = root if root is not None else default_data_root()
    found = files.find(root)
    gz = " (each raw or .gz)" if files.gz else ""
    _line(f"files: {', '.join(files.names)}{gz}")
    _line(f"data root: {root} (--data-root DIR or HARNESS_DATA=DIR)")
    if found:
        _line(f"found in: {found[0].parent}")
        return
    _line("missing; looked in:")
    for folder in files.looked(root):
        _line(f"- {folder}", 2)
    _line(f"how to provide them: {files.how.replace('<root>', str(root))}")
    if files.torchvision:
        _line("harness run tries to download them first (--no-download to not).")


def show(
    kind: Annotated[str, typer.Argument(help="method, model or dataset.")],
    name: Annotated[str, typer.Argument(help="Its registered name (see harness list).")],
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", envvar="HARNESS_DATA", help="Where datasets live, for a dataset's files."),
    ] = None,
) -> None:
    """Show one method (its parameters: type, default, meaning), model (its options) or dataset (its files)."""
    singular = kind[:-1] if kind.endswith("s") and kind[:-1] in KINDS else kind
    if singular not in KINDS:
        fail(f"cannot show {kind!r}{did_you_mean(kind, list(KINDS))}; choose method, model or dataset")
    registry = KINDS[singular]
    try:
        entry = registry.entry(name)
    except (UnknownNameError, ImportError) as exc:
        fail(str(exc))
    if singular == "method":
        _show_method(name, entry.builder, entry.description)
    elif singular == "model":
        _show_model(name, entry.builder, entry.description)
    else:
        _show_dataset(name, entry.builder, data_root)
