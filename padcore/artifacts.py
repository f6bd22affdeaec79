"""Artifact folders: atomic writes and the `meta.json` every artifact carries."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from padcore.errors import PadError

META = "meta.json"
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out`.

    On an exception the temporary folder is removed and `out` is untouched, so a
    failed step never leaves a partial artifact behind; a full disk is a PadError.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is read by other users and containers
    try:
        with _disk_full_is_an_error(out, "the previous artifact, if any, is untouched"):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into(tmp, out)


@contextlib.contextmanager
def _disk_full_is_an_error(out: Path, kept: str) -> Iterator[None]:
    """A write that found no room (full disk, quota, file size limit) as a PadError naming `out`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise PadError(f"{out}: {os.strerror(exc.errno)} while writing {exc.filename or 'it'}; {kept}") from exc


def clear_leftovers(out: Path) -> None:
    """Remove what killed writers of `out` left beside it: their temporary folders and superseded artifacts.

    Each is named after its writer's process id; a folder whose writer is alive
    (another process writing `out` now) is left alone. Our own id on one can only
    be a dead writer's: a restarted container numbers its processes anew.
    """
    for path in out.parent.glob(f".{out.name}.*"):
        m = re.fullmatch(rf"\.{re.escape(out.name)}\.(?:tmp-(\d+)-.*|old-(\d+))", path.name)
        if m and not _alive(int(m.group(1) or m.group(2))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _swap_into(src: Path, out: Path) -> None:
    """Rename `src` to `out`, replacing a previous `out` only once `src` is in place."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
    os.rename(src, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> dict:
    """The JSON object in the file `path`, or a PadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise PadError(f"{path}: missing")
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # bad bytes, bad JSON, or nested past Python's depth
        raise PadError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise PadError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def meta_field(meta: dict, name: str, kind: type | tuple[type, ...], path: str | os.PathLike) -> Any:
    """`meta[name]`, which must be of type `kind` (a bool is no int here); else a PadError naming file and field."""
    value = meta.get(name)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise PadError(f"{path}: field {name!r} is {value!r}; expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def read_meta(folder: str | os.PathLike, kind: str, hints: dict[str, str] | None = None) -> dict:
    """Read `folder/meta.json` and check it describes an artifact of `kind`.

    `hints` maps a wrong kind to advice appended to the error.
    """
    path = Path(folder) / META
    if not path.is_file():
        raise PadError(f"{path}: missing; is {folder} a pad {kind} artifact?")
    meta = read_json(path)
    if meta.get("kind") != kind:
        hint = (hints or {}).get(meta.get("kind"), "") if isinstance(meta.get("kind"), str) else ""
        raise PadError(f"{path}: field 'kind' is {meta.get('kind')!r}, expected {kind!r}{hint}")
    return meta


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def resumable_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Like `atomic_dir`, but the work folder has a fixed name and survives a failure.

    A rerun with the same `out` finds the work folder and can resume from what it
    holds (a retried pipeline step continues instead of starting over).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(out)
    work = out.parent / f".{out.name}.partial"
    work.mkdir(exist_ok=True)
    with _disk_full_is_an_error(out, f"the previous artifact, if any, is untouched; {work} keeps the work done "
                                     "for a rerun"):
        yield work
    _swap_into(work, out)
