"""Files replaced whole or not at all: written beside their place under a temporary name, then renamed.

A report killed while it writes leaves the previous ``report.html`` (or figure, or CSV) as it was, never a
truncated one; at most a hidden ``.NAME.*.tmp`` file stays behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s directory to write to; it replaces ``path`` when the block succeeds
    and is removed when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
