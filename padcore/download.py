"""The data cache (`PAD_DATA_HOME`) and the ways raw files get into it.

`fetch` downloads one URL (verified by SHA-256 when a hash is pinned),
`extract` takes members out of a downloaded zip, `gcs_download` copies objects
from a `gs://` folder. Each writes under a temporary name and renames at the
end, so an interrupted copy never poses as the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from padcore.artifacts import sha256_file
from padcore.errors import PadError


def data_home() -> Path:
    """The cache folder: `$PAD_DATA_HOME`, default `~/.cache/pad`."""
    return Path(os.environ.get("PAD_DATA_HOME") or Path.home() / ".cache" / "pad").expanduser()


def _part(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def fetch(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Return `dest`, downloading `url` to it first unless a verified copy is there."""
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        if not os.access(dest.parent, os.W_OK):
            raise PadError(f"{dest}: SHA-256 {sha256_file(dest)} does not match the pinned {sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _part(dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
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


def extract(archive: Path, names: list[str], folder: Path) -> list[Path]:
    """Extract the members of a zip whose base names are `names` into `folder`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
            missing = [n for n in names if n not in members]
            if missing:
                raise PadError(f"{archive}: no member(s) {missing} in the archive")
            out = []
            for name in names:
                dest = folder / name
                with zf.open(members[name]) as src, open(_part(dest), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(_part(dest), dest)
                out.append(dest)
            return out
    except zipfile.BadZipFile as exc:
        raise PadError(f"{archive}: not a zip archive ({exc}); delete it to download it again") from exc


def split_gs(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b/` -> ("bucket", "a/b/"); the prefix is empty or ends with a slash."""
    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket_name:
        raise PadError(f"{uri}: expected gs://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket_name, f"{prefix}/" if prefix else ""


def gcs_list(uri: str) -> list[str]:
    """Names of every object under a `gs://` prefix, subfolders included, relative to it."""
    return sorted(gcs_blobs(uri))


def gcs_download(uri: str, names: list[str], folder: Path) -> dict[str, Path]:
    """Copy the objects `<uri>/<name>` that exist into `folder`; returns name -> local path.

    A name may hold slashes (an object in a subfolder); it lands at the same relative path.
    Uses google-cloud-storage's default credentials, or the emulator named by
    `STORAGE_EMULATOR_HOST` when that is set.
    """
    blobs = gcs_blobs(uri)
    out = {}
    with _gcs_errors(uri):
        for name in names:
            blob = blobs.get(name)
            if blob is None:
                continue
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(_part(dest), "wb") as f:
                with tqdm.wrapattr(f, "write", total=blob.size, desc=f"download {name}", leave=False) as bar:
                    blob.download_to_file(bar)
            os.replace(_part(dest), dest)
            out[name] = dest
    return out


def gcs_blobs(uri: str) -> dict:
    """name relative to a `gs://` prefix -> its blob (size, generation, ...), subfolders included."""
    from google.cloud import storage

    bucket_name, prefix = split_gs(uri)
    with _gcs_errors(uri):
        listing = storage.Client().list_blobs(bucket_name, prefix=prefix)
        return {b.name[len(prefix) :]: b for b in listing if not b.name.endswith("/")}


@contextlib.contextmanager
def _gcs_errors(uri: str) -> Iterator[None]:
    """Google Cloud Storage failures as a PadError naming `uri`."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except (GoogleAPIError, GoogleAuthError, OSError) as exc:
        raise PadError(f"{uri}: cannot read from Google Cloud Storage ({exc})") from exc
