"""Artifact folders: atomic writes and the `meta.json` every artifact carries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from padcore.errors import PadError

META = "meta.json"


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out`.

    On an exception the temporary folder is removed and `out` is untouched, so a
    failed step never leaves a partial artifact behind.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is read by other users and containers
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into(tmp, out)


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


def read_meta(folder: str | os.PathLike, kind: str, hints: dict[str, str] | None = None) -> dict:
    """Read `folder/meta.json` and check it describes an artifact of `kind`.

    `hints` maps a wrong kind to advice appended to the error.
    """
    path = Path(folder) / META
    if not path.is_file():
        raise PadError(f"{path}: missing; is {folder} a pad {kind} artifact?")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PadError(f"{path}: not valid JSON ({exc})") from exc
    if meta.get("kind") != kind:
        hint = (hints or {}).get(meta.get("kind"), "")
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
    work = out.parent / f".{out.name}.partial"
    work.mkdir(exist_ok=True)
    yield work
    _swap_into(work, out)
