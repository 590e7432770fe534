"""``--where``: a filter over the runs table, parsed and checked before anything is evaluated.

A filter takes column names (``method``, ```param.rank``` in backticks, or ``param.rank`` as written),
constants (strings, numbers, True, False, None), comparisons (``== != < <= > >=``, chained too),
``in`` / ``not in`` a list, and ``and`` / ``or`` / ``not`` (or pandas' ``&``, ``|``, ``~``). ``==`` with a list
means ``in``. Nothing else is accepted (no calls, attributes, ``@`` variables, arithmetic or subscripts), and
the text is never handed to pandas' ``query``/``eval``: the mask is built here, column by column.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

import pandas as pd

from harness.config import did_you_mean

from .errors import ReportError

_PLACEHOLDER = "__harness_column_{}__"
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_CONSTANTS = (str, int, float, bool, type(None))
ALLOWED = (
    "a filter takes column names, constants (strings, numbers, True, False, None), comparisons "
    "(== != < <= > >=), in / not in [a, list], and and / or / not (or &, |, ~)"
)


class _Refused(Exception):
    """A part of the expression that a filter does not accept."""

    def __init__(self, token: str, why: str = "is not allowed"):
        super().__init__(token, why)
        self.token, self.why = token, why


def _unquote_backticks(text: str) -> tuple[str, dict[str, str]]:
    """The expression with each ```name``` replaced by a placeholder identifier (and ``&``, ``|`` by ``and``,
    ``or``, as pandas reads them), and the placeholders' names."""
    out: list[str] = []
    names: dict[str, str] = {}
    quote, i = None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and i + 1 < len(text):
                out.append(text[i : i + 2])
                i += 2
                continue
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "&|":  # pandas' precedence: as low as and / or, below the comparisons
            out.append(" and " if c == "&" else " or ")
            i += 1
            continue
        elif c == "@":
            raise _Refused("@", "(a reference to a Python variable) is not allowed")
        elif c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise _Refused("`", "opens a column name that is never closed")
            key = _PLACEHOLDER.format(len(names))
            names[key] = text[i + 1 : end]
            out.append(key)
            i = end + 1
            continue
        out.append(c)
        i += 1
    return "".join(out), names


class _Filter:
    """Checks a parsed expression against the whitelist, then evaluates it on the runs table."""

    def __init__(self, source: str, names: dict[str, str], runs: pd.DataFrame):
        self.source, self.names, self.runs = source, names, runs

    def token(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source, node) or type(node).__name__
        for key, name in self.names.items():
            text = text.replace(key, f"`{name}`")
        return text if len(text) <= 60 else text[:57] + "..."

    def column(self, name: str, node: ast.AST) -> pd.Series:
        if name not in self.runs.columns:
            known = list(self.runs.columns)
            raise _Refused(self.token(node), f"is no column of the runs table{did_you_mean(name, known)}")
        return self.runs[name]

    def dotted(self, node: ast.AST) -> str | None:
        """``param.rank`` written without backticks: the dotted name, where it is all plain names."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            head = self.dotted(node.value)
            return None if head is None else f"{head}.{node.attr}"
        return None

    def value(self, node: ast.AST) -> Any:
        """A column (Series), a constant, or a list of constants."""
        if isinstance(node, ast.Constant) and isinstance(node.value, _CONSTANTS):
            return node.value
        if isinstance(node, ast.Name):
            return self.column(self.names.get(node.id, node.id), node)
        if isinstance(node, ast.Attribute):
            name = self.dotted(node)
            if name is not None and name in self.runs.columns:
                return self.runs[name]
            raise _Refused(self.token(node), "(an attribute) is not allowed; put column names with dots in backticks")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = node.operand
            if isinstance(v, ast.Constant) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
                return -v.value if isinstance(node.op, ast.USub) else v.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.value(e) for e in node.elts]
            if any(isinstance(x, (pd.Series, list)) for x in items):
                raise _Refused(self.token(node), "is not allowed: a list holds constants only")
            return items
        return self.mask(node)

    def compare(self, node: ast.Compare) -> pd.Series:
        left = self.value(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.value(right_node)
            part = self._pair(op, left, right, node)
            result = part if result is None else result & part
            left = right
        return result

    def _pair(self, op: ast.cmpop, left: Any, right: Any, node: ast.AST) -> pd.Series:
        if isinstance(op, (ast.In, ast.NotIn)) or (isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(right, list)):
            if not isinstance(left, pd.Series):
                left, right = right, left
            if not isinstance(left, pd.Series):
                raise _Refused(self.token(node), "compares no column")
            values = list(right) if isinstance(right, (list, pd.Series)) else [right]
            hit = left.isin(values)
            return ~hit if isinstance(op, (ast.NotIn, ast.NotEq)) else hit
        fn = _COMPARE.get(type(op))
        if fn is None:
            raise _Refused(self.token(node), f"({type(op).__name__}) is not allowed")
        if not isinstance(left, pd.Series) and not isinstance(right, pd.Series):
            raise _Refused(self.token(node), "compares no column")
        if isinstance(left, list) or isinstance(right, list):
            raise _Refused(self.token(node), "compares with a list: use in [...]")
        return fn(left, right)

    def mask(self, node: ast.AST) -> pd.Series:
        """A true/false per run."""
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            out = parts[0]
            for p in parts[1:]:
                out = combine(out, p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return ~self.boolean(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise _Refused(self.token(node))

    def boolean(self, node: ast.AST) -> pd.Series:
        v = self.value(node)
        if not isinstance(v, pd.Series) or not pd.api.types.is_bool_dtype(v.dtype):
            got = type(v).__name__ + (f" of {v.dtype}" if isinstance(v, pd.Series) else "")
            raise _Refused(self.token(node), f"does not give true/false per run (it gives {got})")
        return v.fillna(False).astype(bool)


def where_mask(runs: pd.DataFrame, where: str) -> pd.Series:
    """The runs that ``where`` selects, as a boolean mask; a :class:`ReportError` (exit 2) names what is refused."""
    try:
        source, names = _unquote_backticks(where)
        tree = ast.parse(source.strip(), mode="eval")
    except _Refused as exc:
        raise ReportError(f"--where {where!r}: {exc.token!r} {exc.why}; {ALLOWED}") from None
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        columns = ", ".join(f"`{c}`" if not c.isidentifier() else c for c in runs.columns)
        raise ReportError(
            f"--where {where!r} is not a valid query over the runs table: {type(exc).__name__}: {exc}.\n"
            f"Write a filter such as \"method == 'full' and dataset == 'mnist'\"; put column names "
            f"with dots in backticks (`param.rank` == 8); {ALLOWED}. Columns: {columns}"
        ) from None
    try:
        _Filter(source.strip(), names, runs.iloc[:0]).boolean(tree.body)  # checked on no rows first
        return _Filter(source.strip(), names, runs).boolean(tree.body)
    except _Refused as exc:
        raise ReportError(f"--where {where!r}: {exc.token!r} {exc.why}; {ALLOWED}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise ReportError(
            f"--where {where!r} is not a valid query over the runs table: {type(exc).__name__}: {exc}"
        ) from None
