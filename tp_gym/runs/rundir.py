"""The run directory: the episode log a run appends to, its manifest and its lock.

``DIR/episodes.jsonl`` holds one `EpisodeLog` per line (``episodes-*.jsonl`` shards copied
in are read too). `EpisodeWriter` appends lines with one `write` under an exclusive file
lock, then fsyncs, so several processes can share the log; `GroupCommit` batches the
lines of episodes that finish together into one write and one fsync, in a background
thread. A torn last line (a process died inside `write`) is cut off by `repair_tail`;
`load_run` reads a run strictly, naming the file and line of anything that is not an
episode or appears twice.
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
from tp_gym.variables import parse_variables

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer process only
    fcntl = None  # type: ignore[assignment]
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
    """Cut a torn last line (no newline: the writer died mid-write) off `path`.

    Returns the number of bytes removed.
    """
    if not path.is_file():
        return 0
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # find the last newline, reading backwards in blocks
        position = size
        keep = 0
        while position > 0:
            start = max(0, position - 65536)
            handle.seek(start)
            block = handle.read(position - start)
            index = block.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            position = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


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
                raise ValueError(
                    f"{path}:{number}: not an episode log; fix or delete that line before resuming"
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
        for raw in handle:
            if raw.strip() and EpisodeLog.model_validate_json(raw).error is not None:
                dropped += 1
            elif raw.strip():
                kept.append(raw)
    if dropped:
        temporary = path.with_suffix(".jsonl.tmp")
        with temporary.open("wb") as handle:
            handle.writelines(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    return dropped


class EpisodeWriter:
    """Appends lines to a JSONL file: one `write` under an exclusive lock, then fsync.

    Safe across threads (a mutex) and across processes (`fcntl.flock` on POSIX), so several
    worker processes can share one log without interleaving lines.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._mutex = threading.Lock()

    def write_lines(self, lines: Sequence[str]) -> None:
        """Append `lines` (each ending in a newline) and make them durable."""
        data = "".join(lines).encode("utf-8")
        with self._mutex:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            finally:
                if fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

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


@contextlib.contextmanager
def dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory; fail fast if another run holds it."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"{run_dir}: another tp-gym eval is writing to this directory"
            ) from None
        yield
    finally:
        os.close(fd)


def write_manifest(
    run_dir: Path, grid: Grid | None, settings: dict[str, Any], metadata: dict[str, Any]
) -> None:
    from tp_gym import __version__

    path = run_dir / MANIFEST_FILE
    manifest: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            manifest = json.loads(path.read_text(encoding="utf-8"))
    invocation = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tp_gym": __version__,
        **settings,
    }
    manifest.setdefault("invocations", []).append(invocation)
    if grid is not None:
        manifest["grid"] = grid.describe()
    manifest.update(metadata)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
