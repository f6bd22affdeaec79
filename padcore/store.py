"""The model store: immutable published versions and the `champion` pointer, in a folder or on GCS.

    STORE/versions/<time>-<hash>/manifest.json   what the version is (written last: no manifest, no version)
    STORE/versions/<time>-<hash>/model/          the model artifact's files, as they were
    STORE/versions/<time>-<hash>/items.parquet   item_idx -> item (the source's id)
    STORE/versions/<time>-<hash>/text/           the frozen text table, for models with text experts
    STORE/champion.json                          {"version", "previous": [older champions], "updated"}

A version is self-contained: it ranks and serves without the run that made it.
The pointer is replaced by compare-and-swap (GCS: a generation precondition; a
folder: a lock, then a rename), so of two runs that promote against the same
champion exactly one wins and the pointer is never half-written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from padcore.artifacts import atomic_dir, read_meta, sha256_file, write_json
from padcore.dataset import load_dataset
from padcore.errors import PadError

FORMAT = "pad.store/1"
MANIFEST, CHAMPION, ITEMS = "manifest.json", "champion.json", "items.parquet"
CURRENT: Any = object()  # promote against whatever the champion is now


class Conflict(PadError):
    """The champion changed between reading it and replacing it."""


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- backends


class _Folder:
    """A store in a local folder. Versions appear by rename; the pointer changes under a lock."""

    def __init__(self, root: Path):
        self.root = root

    def get(self, name: str) -> tuple[bytes, str] | None:
        path = self.root / name
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def put_if(self, name: str, data: bytes, token: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.get(name)
            if (current[1] if current else None) != token:
                raise Conflict(f"{self.root / name}: changed since it was read")
            write_bytes(self.root / name, data)

    @contextlib.contextmanager
    def stage(self) -> Iterator[Path]:
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.root / "versions"))
        folder.chmod(0o755)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self, folder: Path, version: str) -> None:
        try:
            os.rename(folder, self.root / "versions" / version)
        except OSError:
            if not (self.root / "versions" / version / MANIFEST).is_file():
                raise

    def version_names(self) -> list[str]:
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())

    def local_version(self, version: str, manifest: dict) -> Path:
        folder = self.root / "versions" / version
        verify(folder, manifest)
        return folder


class _Gcs:
    """A store under a gs:// prefix. A version is visible once its manifest (uploaded last) exists."""

    def __init__(self, uri: str):
        from google.cloud import storage

        from padcore.download import split_gs

        self.uri = uri.rstrip("/")
        bucket, self.prefix = split_gs(uri)
        with self.errors():
            self.bucket = storage.Client().bucket(bucket)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        from google.api_core.exceptions import GoogleAPIError, PreconditionFailed
        from google.auth.exceptions import GoogleAuthError

        try:
            yield
        except PreconditionFailed as exc:
            raise Conflict(f"{self.uri}: changed since it was read ({exc})") from exc
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise PadError(f"{self.uri}: Google Cloud Storage refused the request ({exc})") from exc

    def get(self, name: str) -> tuple[bytes, int] | None:
        with self.errors():
            blob = self.bucket.get_blob(self.prefix + name)
            if blob is None:
                return None
            generation = blob.generation  # before the download, which may reset it from the response headers
            return blob.download_as_bytes(), generation

    def put_if(self, name: str, data: bytes, token: int | None) -> None:
        with self.errors():
            self.bucket.blob(self.prefix + name).upload_from_string(
                data, content_type="application/json", if_generation_match=token or 0)

    @contextlib.contextmanager
    def stage(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="pad-publish-") as tmp:
            yield Path(tmp)

    def commit(self, folder: Path, version: str) -> None:
        base = f"{self.prefix}versions/{version}/"
        with self.errors():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path != folder / MANIFEST:
                    self.bucket.blob(base + str(path.relative_to(folder))).upload_from_filename(str(path))
        with contextlib.suppress(Conflict), self.errors():  # Conflict: the same files published in the same second
            self.bucket.blob(base + MANIFEST).upload_from_filename(str(folder / MANIFEST), if_generation_match=0)

    def version_names(self) -> list[str]:
        with self.errors():
            names = [b.name[len(self.prefix) :] for b in self.bucket.client.list_blobs(
                self.bucket, prefix=f"{self.prefix}versions/")]
        return sorted(n.split("/")[1] for n in names if n.count("/") == 2 and n.endswith("/" + MANIFEST))

    def local_version(self, version: str, manifest: dict) -> Path:
        from padcore.download import data_home, gcs_download

        bucket, prefix = self.bucket.name, self.prefix.rstrip("/")
        folder = data_home() / "store-cache" / bucket / prefix / version
        with contextlib.suppress(PadError):
            verify(folder, manifest)
            return folder
        with atomic_dir(folder) as tmp:
            gcs_download(f"{self.uri}/versions/{version}", [MANIFEST, *manifest["files"]], tmp)
            verify(tmp, manifest)
        return folder


def write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def verify(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists is in `folder` with its SHA-256; else the version is refused."""
    for rel, info in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise PadError(f"{path}: missing from version {manifest.get('version')}")
        got = sha256_file(path)
        if got != info["sha256"]:
            raise PadError(f"{path}: SHA-256 {got[:12]}… does not match the manifest's {info['sha256'][:12]}…; "
                           f"version {manifest.get('version')} is corrupt")


# ---------------------------------------------------------------- the store


@dataclass
class Published:
    version: str
    promoted: bool
    champion: str | None  # the champion after publishing
    message: str


class Store:
    """A model store at a local folder or a `gs://bucket/prefix`."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = str(uri).rstrip("/") or "."
        self.backend = _Gcs(self.uri) if self.uri.startswith("gs://") else _Folder(Path(self.uri).expanduser())

    # -- reading

    def versions(self) -> list[dict]:
        """Every published version's manifest, oldest first."""
        return [self.manifest(v) for v in self.backend.version_names()]

    def manifest(self, version: str) -> dict:
        got = self.backend.get(f"versions/{version}/{MANIFEST}")
        if got is None:
            raise PadError(f"{self.uri}: no version {version!r} (pad models list --store {self.uri})")
        try:
            manifest = json.loads(got[0])
        except json.JSONDecodeError as exc:
            raise PadError(f"{self.uri}/versions/{version}/{MANIFEST}: not valid JSON ({exc})") from exc
        if manifest.get("format") != FORMAT:
            raise PadError(f"{self.uri}/versions/{version}/{MANIFEST}: format {manifest.get('format')!r}, "
                           f"this pad reads {FORMAT!r}")
        return manifest

    def pointer(self) -> tuple[dict | None, Any]:
        """(champion.json, its token for compare-and-swap); (None, None) before the first promotion."""
        got = self.backend.get(CHAMPION)
        if got is None:
            return None, None
        try:
            return json.loads(got[0]), got[1]
        except json.JSONDecodeError as exc:
            raise PadError(f"{self.uri}/{CHAMPION}: not valid JSON ({exc})") from exc

    def champion(self) -> str | None:
        doc, _ = self.pointer()
        return doc["version"] if doc else None

    def open(self, version: str | None = None) -> Path:
        """A local folder holding `version` (default: the champion), every file checked against its manifest."""
        version = version or self.champion()
        if version is None:
            raise PadError(f"{self.uri}: no champion yet (pad publish --model M --to {self.uri})")
        return self.backend.local_version(version, self.manifest(version))

    # -- writing

    def publish(self, model_dir: str | Path, dataset_dir: str | Path, text_dir: str | Path | None = None, *,
                promote: bool = True, expected: Any = CURRENT, extra: dict | None = None) -> Published:
        """Add a model as a new immutable version; then make it champion, if the champion is still `expected`.

        `expected` defaults to the champion when publishing starts. Losing that race keeps
        the version (published, not champion) and says so.
        """
        if expected is CURRENT:
            expected = self.champion()
        with self.backend.stage() as folder:
            manifest = _assemble(folder, Path(model_dir), Path(dataset_dir), text_dir and Path(text_dir), extra or {})
            self.backend.commit(folder, manifest["version"])
        version = manifest["version"]
        if not promote:
            return Published(version, False, self.champion(), f"published {version} (not promoted)")
        try:
            self.promote(version, expected=expected)
        except Conflict:
            champ = self.champion()
            return Published(version, False, champ, f"published {version} but did not promote it: the champion "
                             f"changed from {expected} to {champ} meanwhile")
        return Published(version, True, version, f"published {version}; it is the champion")

    def promote(self, version: str, expected: Any = CURRENT, tries: int = 5) -> None:
        """Make `version` the champion. With `expected`, only if the champion is still that version."""
        self.manifest(version)  # it must exist
        for _ in range(tries):
            doc, token = self.pointer()
            current = doc["version"] if doc else None
            if expected is not CURRENT and current != expected:
                raise Conflict(f"{self.uri}: the champion is {current}, not {expected}")
            if current == version:
                return
            previous = [*doc["previous"], current] if doc else []
            try:
                self._swap(doc, token, {"version": version, "previous": previous, "updated": now()})
                return
            except Conflict:
                if expected is not CURRENT:
                    raise
        raise Conflict(f"{self.uri}: the champion kept changing; {version} not promoted after {tries} tries")

    def rollback(self, tries: int = 5) -> str:
        """Make the previous champion the champion again; returns it."""
        for _ in range(tries):
            doc, token = self.pointer()
            if not doc or not doc["previous"]:
                raise PadError(f"{self.uri}: no earlier champion to roll back to")
            back = doc["previous"][-1]
            with contextlib.suppress(Conflict):
                self._swap(doc, token, {"version": back, "previous": doc["previous"][:-1], "updated": now()})
                return back
        raise Conflict(f"{self.uri}: the champion kept changing; no rollback after {tries} tries")

    def _swap(self, doc: dict | None, token: Any, new: dict) -> None:
        self.backend.put_if(CHAMPION, (json.dumps(new, indent=2) + "\n").encode(), token)


def publish(model: str | Path, dataset: str | Path, store: str, *, text: str | Path | None = None,
            promote: bool = True, expected: Any = CURRENT) -> Published:
    """The publish step: `model` (trained on `dataset`) -> a new version of `store`, champion if still `expected`."""
    published = Store(store).publish(model, dataset, text, promote=promote, expected=expected)
    print(f"[publish] {published.message}", flush=True)
    return published


# ---------------------------------------------------------------- versions


def _assemble(folder: Path, model_dir: Path, dataset_dir: Path, text_dir: Path | None, extra: dict) -> dict:
    """Write a version's files into `folder`, the manifest last; returns the manifest."""
    ds = load_dataset(dataset_dir)
    meta = read_meta(model_dir, "model")
    if meta.get("dataset_id") != ds.dataset_id:
        raise PadError(f"{model_dir / 'meta.json'}: trained on dataset {meta.get('dataset_id')}, not on "
                       f"{dataset_dir} ({ds.dataset_id}); publish it with the dataset it was trained on")
    (folder / "model").mkdir()
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, folder / "model" / path.name)
    items = pa.table({"item_idx": pa.array(np.arange(1, ds.n_items + 1, dtype=np.int32)),
                      "item": pa.array(ds.items["item"].astype(str).to_numpy(), pa.string()),
                      "freq": pa.array(ds.items["freq"].to_numpy(), pa.int64())})
    pq.write_table(items, folder / ITEMS)
    text = None
    if meta.get("text_hash"):
        if text_dir is None:
            raise PadError(f"{model_dir}: this model has text experts; publish it with its text artifact (--text)")
        from padcore.text import EMBEDDINGS, read_text_meta

        text = read_text_meta(text_dir)
        if text.get("text_hash") != meta["text_hash"] or text.get("item_hash") != ds.item_hash:
            raise PadError(f"{text_dir}: not the text table {model_dir} was trained with (text_hash differs)")
        (folder / "text").mkdir()
        for name in (EMBEDDINGS, "meta.json"):
            _link_or_copy(text_dir / name, folder / "text" / name)
    files = {str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    version = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{digest[:8]}"
    config = json.loads((model_dir / "config.json").read_text())
    metrics = json.loads((model_dir / "metrics.json").read_text()) if (model_dir / "metrics.json").is_file() else {}
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": now(),
        "dataset": {"id": ds.dataset_id, "source": ds.meta.get("source"), "as_of": ds.meta.get("as_of"),
                    "item_hash": ds.item_hash, "n_users": ds.n_users, "n_items": ds.n_items},
        "items": {"file": ITEMS, "count": ds.n_items},
        "model": {"phase": meta.get("phase"), "config": config,
                  "test": {k: v for k, v in metrics.get("test", {}).items() if k != "buckets"}},
        "text": None if text is None else {k: text.get(k) for k in ("encoder", "model", "dim", "dtype", "text_hash")},
        "code": code_version(),
        "parents": {"model": str(model_dir), "dataset": str(dataset_dir), "text": text_dir and str(text_dir),
                    **meta.get("parents", {})},
        "files": files,
        **extra,
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def code_version() -> dict:
    """The pad package version, and the git commit when running from a checkout ($PAD_GIT_SHA in images)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pad = version("pad-rec")
    except PackageNotFoundError:
        pad = None
    sha = os.environ.get("PAD_GIT_SHA")
    if not sha:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                 text=True, timeout=5)
            sha = out.stdout.strip() if out.returncode == 0 else None
    return {"pad": pad, "git": sha or None}
