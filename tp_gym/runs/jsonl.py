"""Append-only JSON Lines files that survive a crash: episode logs, `run --out` files, cassettes.

A process killed inside `write` can leave the last line of a file without its newline. The
next append would be glued onto that fragment, and the good record it carries would be lost
with it. So every append first looks at the file's last byte, under an exclusive lock: if it
is not a newline, the fragment after the last newline is moved to a side file,
``<name>.torn`` (appended there, one fragment per line, never silently dropped), the file is
cut back to its last complete line, and a `TornLineWarning` says so. Then the new lines go
out in one `write` and are fsynced.

Readers name the file and line of anything they cannot read (`bad_line`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer process only
    fcntl = None  # type: ignore[assignment]

TORN_SUFFIX = ".torn"
"""The side file of ``name.jsonl`` that keeps its torn fragments: ``name.jsonl.torn``."""

_BLOCK = 65536


class TornLineWarning(UserWarning):
    """A file's incomplete last line was moved to its side file before appending."""


class SkippedLineWarning(UserWarning):
    """A reader asked to skip unreadable lines skipped one (the warning names it)."""


def torn_path(path: Path) -> Path:
    """Where the torn fragments of `path` are kept."""
    return path.with_name(path.name + TORN_SUFFIX)


def naming(error: OSError, path: Path) -> OSError:
    """`error` as an `OSError` whose message names `path` (os.write's errors name none)."""
    if error.filename is not None or str(path) in str(error):
        return error
    reason = error.strerror or str(error) or type(error).__name__
    return type(error)(error.errno, f"{path}: {reason}")


def bad_line(path: Path, number: int, what: str) -> ValueError:
    """The error a reader raises for line `number` of `path` that is not `what`."""
    return ValueError(f"{path}:{number}: {what}")


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold an exclusive `flock` on `fd` (a no-op where there are no POSIX locks)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def repair_fd(fd: int, path: Path) -> int:
    """Move a torn last line of the open file `fd` (named `path`) to its side file.

    The caller holds the file's lock. Returns the number of bytes moved (0 when the file is
    empty or ends with a newline); warns with `TornLineWarning` when it moved any.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    keep = 0
    end = size
    while end > 0:  # the last newline, reading backwards in blocks
        start = max(0, end - _BLOCK)
        index = os.pread(fd, end - start, start).rfind(b"\n")
        if index >= 0:
            keep = start + index + 1
            break
        end = start
    fragment = os.pread(fd, size - keep, keep)
    side = torn_path(path)
    side_fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(side_fd, fragment + b"\n")
        os.fsync(side_fd)
    finally:
        os.close(side_fd)
    os.ftruncate(fd, keep)
    os.fsync(fd)
    warnings.warn(
        f"{path}: its last line was incomplete (a crash while writing); the {len(fragment)} "
        f"byte(s) were moved to {side} and the file continues after its last complete line",
        TornLineWarning,
        stacklevel=3,
    )
    return len(fragment)


def repair(path: Path) -> int:
    """`repair_fd` on the file at `path`, under its lock (0 if there is no file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        with locked(fd):
            return repair_fd(fd, path)
    finally:
        os.close(fd)


def open_append(path: Path) -> int:
    """A file descriptor appending to `path` (created if missing; never through a symlink)."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as error:
        if path.is_symlink():
            raise OSError(
                error.errno, f"{path}: is a symbolic link; refusing to write through it"
            ) from None
        raise


def append_fd(fd: int, path: Path, data: bytes) -> None:
    """Append `data` (whole lines) to the open file `fd`: lock, repair a torn tail, one
    write, fsync."""
    with locked(fd):
        repair_fd(fd, path)
        write_all(fd, data)
        os.fsync(fd)


def append_lines(path: str | Path, lines: Sequence[str]) -> None:
    """Append `lines` (each ending in a newline) to `path`, surviving a crash (see above).
    A failed write (disk full, read-only) raises `OSError` naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_append(path)
        try:
            append_fd(fd, path, "".join(lines).encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as error:
        raise naming(error, path) from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (`os.write` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
