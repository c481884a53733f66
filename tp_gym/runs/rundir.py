"""The run directory: the episode log a run appends to, its manifest, its lock, its rules.

``DIR/episodes.jsonl`` holds one `EpisodeLog` per line (``episodes-*.jsonl`` shards copied
in are read too); ``DIR/run.json`` is the manifest (what was asked, never credentials).

The directory is the run's alone (`run_dir_lock`): one that is not empty and holds no
manifest of ours is refused, and so is a symbolic link inside it (`refuse_symlinks`); the
exclusive lock is taken before anything is written. `EpisodeWriter` appends lines with one
`write` under a file lock, then fsyncs, after moving a torn last line to its side file
(`tp_gym.runs.jsonl`); `GroupCommit` batches the lines of episodes that finish together
into one write and one fsync, in a background thread. `atomic_write` puts whole files
(manifest, report, plots) in place by rename. `load_run` reads a run strictly, naming the
file and line of anything that is not an episode or appears twice. A failed write raises
`OSError` naming the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tp_gym.runs.grid import EpisodeKey, Grid
from tp_gym.runs.jsonl import append_fd, bad_line, fcntl, naming, open_append, repair, write_all
from tp_gym.variables import parse_variables

FILE_LOCKS = fcntl is not None
"""Whether several processes can share a log (POSIX file locks)."""

if TYPE_CHECKING:
    from tp_gym.runs.episode import EpisodeLog

EPISODES_FILE = "episodes.jsonl"
"""The log every run appends to, inside the run directory."""
SHARD_PATTERN = "episodes-*.jsonl"
"""Extra log files of a run directory (shards written elsewhere and copied in) are read too."""
MANIFEST_FILE = "run.json"
"""What was asked for: the grid and the settings of each invocation (never used for numbers)."""
LOCK_FILE = ".tp-gym.lock"


def episode_files(run_dir: str | Path) -> list[Path]:
    """The log files of a run directory: ``episodes.jsonl`` first, then shards, sorted."""
    run_dir = Path(run_dir)
    files = [run_dir / EPISODES_FILE] if (run_dir / EPISODES_FILE).is_file() else []
    return files + sorted(p for p in run_dir.glob(SHARD_PATTERN) if p.is_file())


def load_run_to_report(run: str | Path) -> list[EpisodeLog]:
    """The episodes `tp-gym report` and `tp-gym view` read: `load_run`, after refusing a
    symbolic link inside a run directory (`RunDirError`), and a `ValueError` for a run
    without episodes yet."""
    run = Path(run)
    if run.is_dir():
        refuse_symlinks(run)
    logs = load_run(run)
    if not logs:
        raise ValueError(f"{run}: the run has no episodes yet")
    return logs


def load_run(run: str | Path) -> list[EpisodeLog]:
    """Every episode of a run directory (or of one JSONL file), strictly.

    Raises `FileNotFoundError` for a missing path, `ValueError` naming the file and line of
    the first line that is not an episode (an incomplete last line says the run was
    interrupted and `--resume` repairs it), or of an episode that appears twice.
    """
    from tp_gym.runs.episode import EpisodeLog

    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"{run}: no such run directory or file")
    files = [run] if run.is_file() else episode_files(run)
    if not files:
        raise ValueError(f"{run}: no {EPISODES_FILE} (or {SHARD_PATTERN}) in this directory")
    logs: list[EpisodeLog] = []
    where: dict[EpisodeKey, str] = {}
    for path in files:
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn = not data.endswith(b"\n") and bool(data)
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                log = EpisodeLog.model_validate_json(raw)
            except ValueError as error:
                if torn and number == len(lines):
                    raise ValueError(
                        f"{path}:{number}: incomplete last line (the run was interrupted while "
                        "writing); resume the run with --resume to repair it, or delete the line"
                    ) from None
                first = error.errors()[0] if hasattr(error, "errors") else {"loc": (), "msg": ""}
                loc = ".".join(str(p) for p in first["loc"]) or "line"
                raise ValueError(
                    f"{path}:{number}: not an episode log ({loc}: {first['msg']})"
                ) from None
            here = f"{path}:{number}"
            if log.key in where:
                raise ValueError(
                    f"{here}: duplicate episode {_describe_key(log.key)}, already at {where[log.key]}"
                )
            where[log.key] = here
            logs.append(log)
    return logs


def _describe_key(key: EpisodeKey) -> str:
    agent, env_id, variables, seed, protocol = key
    changed = {k: v for k, v in json.loads(variables).items() if _BASELINE.get(k) != v}
    setting = ", ".join(f"{k}={v}" for k, v in changed.items()) or "baseline"
    return f"({agent} on {env_id}, {protocol} protocol, {setting}, seed {seed})"


_BASELINE = parse_variables({}).model_dump()


def repair_tail(path: Path) -> int:
    """Move a torn last line of `path` (the writer died mid-write) to its ``.torn`` side
    file (`tp_gym.runs.jsonl.repair`); return the number of bytes moved."""
    return repair(path)


def scan(path: Path) -> tuple[set[EpisodeKey], set[EpisodeKey]]:
    """(all keys, errored keys) of the complete, valid lines of `path`.

    A complete line that is not an episode raises `ValueError`: resuming past it would
    leave a log no report can read.
    """
    from tp_gym.runs.episode import EpisodeLog

    keys: set[EpisodeKey] = set()
    errored: set[EpisodeKey] = set()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                log = EpisodeLog.model_validate_json(raw)
            except ValueError:
                raise bad_line(
                    path, number, "not an episode log; fix or delete that line before resuming"
                ) from None
            keys.add(log.key)
            if log.error is not None:
                errored.add(log.key)
    return keys, errored


def drop_errored(path: Path) -> int:
    """Rewrite `path` without its errored episodes (atomically); return how many were dropped."""
    from tp_gym.runs.episode import EpisodeLog

    kept: list[bytes] = []
    dropped = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                errored = EpisodeLog.model_validate_json(raw).error is not None
            except ValueError:
                raise bad_line(
                    path, number, "not an episode log; fix or delete that line before retrying"
                ) from None
            if errored:
                dropped += 1
            else:
                kept.append(raw)
    if dropped:
        atomic_write(path, b"".join(kept))
    return dropped


class EpisodeWriter:
    """Appends lines to a JSONL file: one `write` under an exclusive lock, then fsync.

    Safe across threads (a mutex) and processes (`fcntl.flock`). Before each write a torn
    last line left by a crash is moved to the side file (`tp_gym.runs.jsonl`). A failed
    write (disk full, read-only) raises `OSError` naming the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = open_append(path)
        except OSError as error:
            raise naming(error, path) from None
        self._mutex = threading.Lock()

    def write_lines(self, lines: Sequence[str]) -> None:
        """Append `lines` (each ending in a newline) and make them durable."""
        data = "".join(lines).encode("utf-8")
        with self._mutex:
            try:
                append_fd(self._fd, self.path, data)
            except OSError as error:
                raise naming(error, self.path) from None

    def close(self) -> None:
        """Close the file."""
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class GroupCommit:
    """Writes finished episodes in the background, one write and one fsync per batch.

    `submit` returns at once, so a slot starts its next episode while the disk works; the
    episodes that finish meanwhile go out together in the next batch. `on_durable` runs
    once a line is fsynced, which is when its episode counts as done. The blocking I/O runs
    in a thread, so the event loop never waits on the disk. A write error is kept and
    raised by the next `submit` and by `drain`.
    """

    def __init__(self, writer: EpisodeWriter) -> None:
        self._writer = writer
        self._pending: list[tuple[str, Callable[[], None] | None]] = []
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def submit(self, line: str, on_durable: Callable[[], None] | None = None) -> None:
        """Queue `line` for writing; `on_durable()` is called once it is on disk."""
        self.check()
        self._pending.append((line, on_durable))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    @property
    def backlog(self) -> int:
        """Lines submitted and not yet handed to the disk."""
        return len(self._pending)

    def check(self) -> None:
        """Raise the error a background write ran into, if any."""
        if self.error is not None:
            raise self.error

    async def _flush(self) -> None:
        while self._pending and self.error is None:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._writer.write_lines, [line for line, _ in batch])
                for _, on_durable in batch:
                    if on_durable is not None:
                        on_durable()
            except Exception as error:  # noqa: BLE001 - re-raised by check() in the runner
                self.error = error

    async def drain(self) -> None:
        """Wait until every submitted line is on disk; raise a write error if one happened."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        self.check()


OUR_MARK = "tp_gym"
"""The key every invocation in a manifest of ours carries (tp_gym's version)."""
REPORT_OUTPUTS = ("report.md", "summary.csv", "mitigations.csv", "view.html", "*.png")
"""What `tp-gym report` writes into a run directory (names and the plots' pattern), the
transcript viewer included."""


class RunDirError(Exception):
    """A run directory that cannot be used as asked (someone else's, a symlink inside, a
    lock held): a one-line message naming the path."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory, renamed into
    place once fsynced: a reader sees the old file or the new one, never a part. A symlink
    at `path` is refused, never followed."""
    if path.is_symlink():
        raise RunDirError(f"{path}: is a symbolic link; refusing to write through it")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(temporary, flags, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise naming(error, path) from None


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest of `run_dir` if it is one of ours (None if missing or foreign)."""
    path = run_dir / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    invocations = manifest.get("invocations") if isinstance(manifest, dict) else None
    if not isinstance(invocations, list) or not all(
        isinstance(i, dict) and OUR_MARK in i for i in invocations
    ):
        return None
    return manifest


def check_ownership(run_dir: Path) -> None:
    """Refuse (`RunDirError`) a directory tp_gym may not write in: not a directory, not
    empty and without a manifest of ours, or holding a symlink where a run writes."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    if not run_dir.is_dir():
        return
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if entries and read_manifest(run_dir) is None:
        raise RunDirError(
            f"{run_dir}: not empty and not a tp-gym run directory (no {MANIFEST_FILE} of "
            "ours); choose a new or empty directory"
        )
    refuse_symlinks(run_dir)


def refuse_symlinks(run_dir: Path) -> None:
    """`RunDirError` naming the first symbolic link inside `run_dir` (tp-gym neither writes
    nor reads a run through links: a planted link would have its target overwritten)."""
    for path in sorted(run_dir.iterdir()):
        if path.is_symlink():
            raise RunDirError(
                f"{path}: a symbolic link inside the run directory; tp-gym never writes "
                "through links, remove it"
            )


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Take the run directory for this run: checked, created, locked, checked again.

    Nothing is written before the exclusive lock is held (a second run on the same directory
    fails at once with `RunDirError`, touching nothing), and a directory that is not ours
    is refused before anything is created in it.
    """
    check_ownership(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise naming(error, run_dir) from None
    lock = run_dir / LOCK_FILE
    if lock.is_symlink():
        raise RunDirError(f"{lock}: is a symbolic link; refusing to write through it")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        raise naming(error, lock) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(
                    f"{run_dir}: another tp-gym run is writing to this directory"
                ) from None
        check_ownership(run_dir)  # what changed while we waited for the lock
        yield
    finally:
        os.close(fd)


def clear_run(run_dir: Path, command: str) -> None:
    """Remove the episodes, manifest and report of a previous run of `command` (the caller
    holds the lock); `RunDirError` if the directory holds another command's run."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return
    if manifest.get("command") != command:
        raise RunDirError(
            f"{run_dir} holds the episodes of a `tp-gym {manifest.get('command', 'eval')}` run; "
            f"choose another directory for `tp-gym {command}`"
        )
    doomed = [*episode_files(run_dir), run_dir / MANIFEST_FILE]
    for pattern in REPORT_OUTPUTS:
        doomed += run_dir.glob(pattern)
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_manifest(
    run_dir: Path, grid: Grid | None, settings: dict[str, Any], metadata: dict[str, Any]
) -> None:
    """Add this invocation (its settings, when, which tp_gym) to ``run.json``, atomically."""
    from tp_gym import __version__

    manifest = read_manifest(run_dir) or {}
    invocation = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        OUR_MARK: __version__,
        **settings,
    }
    manifest.setdefault("invocations", []).append(invocation)
    if grid is not None:
        manifest["grid"] = grid.describe()
    manifest.update(metadata)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    atomic_write(run_dir / MANIFEST_FILE, text.encode("utf-8"))
