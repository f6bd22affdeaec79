"""The images `docker/build.py` built, and the references a pipeline package may name.

`docker/build.py` records every image it makes in `pad-images.json` (beside the
checkout; `--record FILE` for another): per target, its reference, image id,
build time and where it went: `pushed` to its registry, `kind:<cluster>` or
`minikube:<profile>` (loaded into that cluster's nodes), or `local` (built with
`--no-push`: only this machine's engine holds it). The placement files name
targets, never references, so a build changes no tracked file.

Compiling, submitting and scheduling take the references from the record and
refuse a target it lacks, or one the placement's cluster cannot pull: a
package naming an image nothing pushed starts pods that end in ImagePullBackOff.
`allow_unbuilt` names `pad-<target>:<version>-unbuilt` instead, for reading a
package (and for tests); no cluster can pull those.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from components.base import unbuilt
from padcore.errors import PadError

RECORD_ENV = "PAD_IMAGES"
RECORD_NAME = "pad-images.json"
CHECKOUT = Path(__file__).resolve().parents[1]
# Where a cluster of each shape can take an image from (pipelines/shapes.py): pushed to a registry it
# reaches, or loaded into its nodes (`kind load docker-image`, `minikube image load`).
DELIVERIES = {"gke": ("pushed",), "kind": ("pushed", "kind:"), "minikube": ("pushed", "minikube:")}
BUILD_HINT = "build it first: `python docker/build.py --registry REGISTRY` (README, \"Images\")"


@dataclass(frozen=True)
class Built:
    """One image docker/build.py made."""

    ref: str
    image_id: str
    delivered: str  # pushed | kind:<cluster> | minikube:<profile> | local
    built_at: str


def record_path(path: str | os.PathLike | None = None) -> Path:
    """The record: `path`, else $PAD_IMAGES, else pad-images.json in the current folder, else the checkout's."""
    if path or os.environ.get(RECORD_ENV):
        return Path(path or os.environ[RECORD_ENV])
    here = Path.cwd() / RECORD_NAME
    return here if here.is_file() else CHECKOUT / RECORD_NAME


def read_record(path: str | os.PathLike | None = None) -> dict[str, Built]:
    """target -> what was built for it; {} when there is no record."""
    path = record_path(path)
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {target: Built(**entry) for target, entry in raw["images"].items()}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PadError(f"{path}: not an image record of docker/build.py ({exc})") from exc


def write_record(path: str | os.PathLike | None, built: dict[str, Built]) -> Path:
    """Add `built` to the record (other targets kept), written whole or not at all."""
    path = record_path(path)
    images = {**read_record(path), **built}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"images": {t: asdict(b) for t, b in sorted(images.items())}}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def image_refs(targets: list[str], shape: str | None, record: str | os.PathLike | None = None,
               allow_unbuilt: bool = False, placement: str = "the placement",
               otherwise: str = "or pass --allow-unbuilt-images to only read the package") -> dict[str, str]:
    """target -> reference for a package for a cluster of `shape` (None: this machine's engine, any delivery).
    `otherwise`: what else the user may do, for the message naming a target nothing built."""
    if allow_unbuilt:
        return {t: unbuilt(t) for t in targets}
    built, path = read_record(record), record_path(record)
    for t in targets:
        if t not in built:
            raise PadError(f"{placement} runs steps in image '{t}', which no docker/build.py run recorded in {path}; "
                           f"{BUILD_HINT}, {otherwise}")
        if shape is not None and not built[t].delivered.startswith(DELIVERIES[shape]):
            raise PadError(f"image {built[t].ref} ({path}) was {_how(built[t].delivered)}, where a {shape} cluster "
                           f"cannot pull it; {'push it' if shape == 'gke' else f'push it or load it into the {shape} cluster'}"
                           f" (python docker/build.py --registry REGISTRY{'' if shape == 'gke' else f' --{shape}-load NAME'})")
    return {t: built[t].ref for t in targets}


def _how(delivered: str) -> str:
    if delivered == "local":
        return "built with --no-push (only this machine's engine holds it)"
    return f"loaded into {delivered.replace(':', ' cluster ')}"
