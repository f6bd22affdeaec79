"""The data cache (`PAD_DATA_HOME`) and verified downloads into it."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tqdm import tqdm

from padcore.artifacts import sha256_file
from padcore.errors import PadError


def data_home() -> Path:
    """The cache folder: `$PAD_DATA_HOME`, default `~/.cache/pad`."""
    return Path(os.environ.get("PAD_DATA_HOME") or Path.home() / ".cache" / "pad").expanduser()


def fetch(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Return `dest`, downloading `url` to it first unless a verified copy is there.

    The download goes to a temporary name and is renamed only after its hash
    matches, so an interrupted or corrupted download never poses as the file.
    """
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        if not os.access(dest.parent, os.W_OK):
            raise PadError(f"{dest}: SHA-256 {sha256_file(dest)} does not match the pinned {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PadError(f"download of {url} failed: {exc}") from exc
    if sha256 is not None:
        got = sha256_file(tmp)
        if got != sha256:
            tmp.unlink(missing_ok=True)
            raise PadError(f"{url}: SHA-256 {got} does not match the pinned {sha256}; nothing was saved to {dest}")
    os.replace(tmp, dest)
    return dest
