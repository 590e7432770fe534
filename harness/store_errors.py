"""Why a results store cannot be read or written, said once, clearly: the file, the real cause, what to do.

:func:`explain` turns the low-level error (an :mod:`sqlite3` error, an :class:`OSError`) into a
:class:`StoreError` whose ``exit_code`` the command line exits with:

====  ==========================================================================================
3     the store cannot be written or opened: a read-only directory, an unwritable file, locked, I/O
4     the disk is full
5     the store is damaged (not a database, malformed); it is never modified
====  ==========================================================================================
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path


class StoreError(RuntimeError):
    """A store that cannot be used; the message names the file, the cause and what to do."""

    exit_code = 3


class StoreReadOnly(StoreError):
    """The results directory (or the database file) cannot be written."""

    exit_code = 3


class StoreFull(StoreError):
    """No space left on the store's disk."""

    exit_code = 4


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a database."""

    exit_code = 5


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DENIED_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
_LOW_SPACE = 1 << 20  # an I/O error with less than this free is taken for a full disk


def _kind(exc: BaseException) -> str | None:
    """full, corrupt, readonly, io, other; None for an error that is not the store's (a bug: let it raise)."""
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return "full"
        return "readonly" if exc.errno in _DENIED_ERRNOS else "io"
    name = getattr(exc, "sqlite_errorname", None) or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return "readonly"
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR")) or "unable to open" in text or "i/o error" in text:
        return "io"
    return "other" if isinstance(exc, sqlite3.OperationalError) else None


def _free(directory: Path) -> int | None:
    for d in (directory, *directory.parents):
        if d.exists():
            try:
                return shutil.disk_usage(d).free
            except OSError:
                return None
    return None


def _writable(directory: Path) -> bool:
    for d in (directory, *directory.parents):
        if d.exists():
            return os.access(d, os.W_OK)
    return False


def explain(exc: BaseException, path: Path, writing: bool) -> StoreError | None:
    """The :class:`StoreError` for ``exc`` met using the store file ``path``; None when it is not a store error."""
    kind = _kind(exc)
    if kind is None:
        return None
    cause = str(exc) or type(exc).__name__
    directory = path.parent
    if kind in ("io", "readonly") and writing and not _writable(directory):
        return StoreReadOnly(
            f"results directory {directory} is read-only ({cause}): {path} cannot be written. Reading it still "
            "works (status, export, report --out ELSEWHERE); to train or merge into it, copy the directory to a "
            "writable place and point --results (or --into) there"
        )
    if kind == "io" and (_free(directory) or 0) < _LOW_SPACE:  # readers too: a WAL store's -shm file is written
        kind = "full"
    if kind == "full":
        return StoreFull(
            f"no space left to write {path} ({cause}): free space on its disk, then run the same command again "
            "(finished runs are kept; an interrupted run trains again)"
        )
    if kind == "corrupt":
        return StoreCorrupt(
            f"{path} is damaged ({cause}); it was left as it is. Recover what it holds with "
            f'sqlite3 {path} ".recover" | sqlite3 recovered.sqlite and put recovered.sqlite in its place, '
            "or restore it from a backup or from the stores it was merged from"
        )
    if kind == "readonly":
        return StoreReadOnly(
            f"cannot write {path} ({cause}): the file is not writable; fix its permissions, "
            "or copy the results directory to a writable place"
        )
    return StoreError(f"cannot use {path} ({cause})")
