"""Build the pad images, tag them by version + git SHA, push or load them into kind or minikube, record them.

    python docker/build.py --registry ghcr.io/me                      # build, push, record
    python docker/build.py --registry pad.local --kind-load pad       # build, load into the kind cluster
    python docker/build.py --registry pad.local --minikube-load minikube   # build, load into minikube
    python docker/build.py --registry pad.local --no-push --targets cpu \\
        --build-arg BASE=my.mirror/python:3.11-slim --torch-wheels wheels/ --ca-bundle proxy-ca.pem
    python docker/build.py --registry ghcr.io/me --targets serve      # the KServe predictor's image
    python docker/build.py --registry ghcr.io/me --dry-run            # only print the references

Any Docker-API engine does: Docker, or podman's API service with DOCKER_HOST
pointing at its socket. The tag is `<version>-<git sha>`, plus `-dirty-<digest>`
of the sources for a tree with uncommitted changes and `-cfg-<digest>` of the
build arguments and wheels when any are given: never a moving `latest`, because
KFP's cache keys on the image string, and never one tag for two different
images. Each image is recorded in `pad-images.json` (`pipelines/images.py`:
reference, id, and whether it was pushed or loaded), where `pad pipeline
compile|submit|schedule` and `pad run --runner docker` take it from; no tracked
file changes, so the next build of the same tree has the same tag.

Build-only inputs go into the build context's `.pad-build/` folder, which only
the Dockerfile's `*-venv` stages read: `--ca-bundle` (a CA that pip trusts, for
a TLS-intercepting proxy) and `--torch-wheels` (a folder from `pip download
torch==<pin> -d DIR`, installed offline). No image layer holds either.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from padcore.artifacts import sha256_file  # noqa: E402
from padcore.errors import PadError  # noqa: E402
from pipelines.containers import engine  # noqa: E402
from pipelines.images import Built, write_record  # noqa: E402
from pipelines.placement import TARGETS  # noqa: E402  the pipeline's images: the steps' `image:` in a placement

SERVE = "serve"  # the KServe predictor's image (k8s/serving/inferenceservice.yaml): not a pipeline step
ALL_TARGETS = (*TARGETS, SERVE)
DOCKERFILE = ROOT / "docker" / "Dockerfile"
IGNORE = ROOT / "docker" / ".dockerignore"
BUILD_INPUTS = ".pad-build"  # context folder of the build-only inputs; the Dockerfile copies it to /tmp/pad-build
WHEELS_PIP = "--no-index --find-links /tmp/pad-build/wheels"  # torch from --torch-wheels, offline
TORCH_PIP_ARGS = ("CPU_TORCH_PIP", "CUDA_TORCH_PIP")
# Docker's predefined proxy arguments: usable without an ARG (Docker also keeps them out of `docker history`).
PROXY_ARGS = {spelling for name in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
              for spelling in (name, name.lower())}


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def ignore_patterns() -> list[str]:
    return [line.strip() for line in IGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def context_files() -> list[str]:
    """Paths of the repository the context holds (what .dockerignore lets through)."""
    from docker.utils.build import exclude_paths

    return sorted(exclude_paths(str(ROOT), ignore_patterns()))


def source_context() -> bytes:
    """The sources as a tar: the repository root filtered by docker/.dockerignore, plus the Dockerfile.

    The builder applies the `.dockerignore` it finds in the context, so that one
    also lets the build-only inputs through.
    """
    from docker.utils.build import create_archive

    dockerignore = "\n".join([*ignore_patterns(), f"!{BUILD_INPUTS}/"])
    extra = [(".dockerignore", dockerignore), (".pad.Dockerfile", DOCKERFILE.read_text())]
    with create_archive(str(ROOT), files=context_files(), extra_files=extra) as f:
        return f.read()


@dataclass
class BuildInputs:
    """What only the build sees: a CA bundle pip trusts, a folder of wheels torch is installed from."""

    ca_bundle: Path | None = None
    torch_wheels: Path | None = None

    def check(self, torch_pin: str) -> None:
        if self.ca_bundle is not None:
            if not self.ca_bundle.is_file():
                raise PadError(f"--ca-bundle {self.ca_bundle}: file not found")
            if b"-----BEGIN CERTIFICATE-----" not in self.ca_bundle.read_bytes():
                raise PadError(f"--ca-bundle {self.ca_bundle}: no PEM certificate in it")
        if self.torch_wheels is not None:
            if not any(self.torch_wheels.glob(f"torch-{torch_pin}*.whl")):
                raise PadError(f"--torch-wheels {self.torch_wheels}: no torch-{torch_pin}*.whl there; "
                               f"fill it with `pip download torch=={torch_pin} -d {self.torch_wheels}`")

    def files(self) -> list[tuple[Path, str]]:
        """(file, its path in the context)."""
        found = [(self.ca_bundle, f"{BUILD_INPUTS}/ca.crt")] if self.ca_bundle else []
        if self.torch_wheels:
            found += [(p, f"{BUILD_INPUTS}/wheels/{p.name}") for p in sorted(self.torch_wheels.iterdir()) if p.is_file()]
        return found


def build_context(source: bytes, inputs: BuildInputs) -> IO[bytes]:
    """`source` plus the `.pad-build/` folder of build-only inputs, as a temporary file (CUDA wheels take GBs)."""
    f = tempfile.TemporaryFile()
    f.write(source)
    f.seek(0)
    with tarfile.open(fileobj=f, mode="a") as tar:
        folder = tarfile.TarInfo(BUILD_INPUTS)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for path, name in inputs.files():
            tar.add(path, arcname=name, recursive=False)
    f.seek(0)
    return f


def build_args(pairs: list[str], inputs: BuildInputs) -> dict[str, str]:
    """`NAME=VALUE` pairs checked against the Dockerfile's ARGs; with wheels, torch comes from them unless set."""
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), re.M))
    args = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise PadError(f"--build-arg {pair!r}: expected NAME=VALUE")
        if name not in declared | PROXY_ARGS:
            raise PadError(f"--build-arg {name}: not an ARG of {DOCKERFILE.relative_to(ROOT)}; "
                           f"expected one of {sorted(declared)} or a proxy variable")
        args[name] = value
    if inputs.torch_wheels:
        for name in TORCH_PIP_ARGS:
            args.setdefault(name, WHEELS_PIP)
    return args


def image_tag(version: str, sha: str, dirty: bool, context: bytes, config: dict[str, str] | None = None) -> str:
    """`<version>-<sha>`; a dirty tree adds the context digest and build arguments or wheels (`config`) add
    theirs, so two different builds never share a tag."""
    tag = f"{version}-{sha}"
    if dirty:
        tag += f"-dirty-{hashlib.sha256(context).hexdigest()[:8]}"
    if config:
        tag += f"-cfg-{hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]}"
    return tag


def build_config(buildargs: dict[str, str], inputs: BuildInputs) -> dict[str, str]:
    """What, besides the sources, decides an image's content: the build arguments (proxy variables aside, which
    only say how to reach the network) and each wheel's name and digest."""
    config = {k: v for k, v in buildargs.items() if k not in PROXY_ARGS}
    if inputs.torch_wheels:
        config.update({f"wheel:{p.name}": sha256_file(p) for p, name in inputs.files() if name.endswith(".whl")})
    return config


def image_refs(registry: str, tag: str, targets=TARGETS) -> dict[str, str]:
    return {t: f"{registry.rstrip('/')}/pad-{t}:{tag}" for t in targets}


def _stream(lines, what: str) -> None:
    """Print a docker progress stream; a reported error becomes a PadError."""
    for chunk in lines:
        if "error" in chunk:
            raise PadError(f"{what}: {chunk['error']}")
        if chunk.get("stream"):
            print(chunk["stream"], end="", flush=True)
        elif chunk.get("status") and chunk.get("id") is None:
            print(chunk["status"], flush=True)


def build(client, context: IO[bytes], target: str, ref: str, buildargs: dict[str, str]) -> None:
    print(f"==> building {ref} (target {target})", flush=True)
    context.seek(0)
    _stream(
        client.api.build(fileobj=context, custom_context=True, dockerfile=".pad.Dockerfile", target=target, tag=ref,
                         buildargs=buildargs, rm=True, decode=True),
        f"building {ref}",
    )


def push(client, ref: str) -> None:
    print(f"==> pushing {ref}", flush=True)
    repository, tag = ref.rsplit(":", 1)
    _stream(client.api.push(repository, tag=tag, stream=True, decode=True), f"pushing {ref}")


def load_into(ref: str, delivered: str) -> None:
    """Load an image into the nodes of a kind cluster or a minikube profile (`kind:NAME`, `minikube:PROFILE`)."""
    tool, name = delivered.split(":", 1)
    print(f"==> loading {ref} into {tool} cluster {name}", flush=True)
    command = (["kind", "load", "docker-image", ref, "--name", name] if tool == "kind"
               else ["minikube", "image", "load", ref, "--profile", name])
    subprocess.run(command, check=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True, help="image repository prefix, e.g. ghcr.io/me or pad.local")
    parser.add_argument("--targets", nargs="+", choices=ALL_TARGETS, default=list(TARGETS),
                        help=f"images to build (default the pipeline's: {' '.join(TARGETS)})")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kind-load", metavar="CLUSTER", help="load into this kind cluster instead of pushing")
    where.add_argument("--minikube-load", metavar="PROFILE", help="load into this minikube profile instead of pushing")
    where.add_argument("--no-push", action="store_true", help="build only (for `pad run --runner docker`)")
    parser.add_argument("--record", help="image record to write (default $PAD_IMAGES, else pad-images.json in "
                        "the checkout)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a Dockerfile ARG (BASE, TORCH, CPU_TORCH_PIP, CUDA_TORCH_PIP) or a proxy variable")
    parser.add_argument("--ca-bundle", type=Path, help="PEM file of CAs pip trusts during the build (never in an image)")
    parser.add_argument("--torch-wheels", type=Path,
                        help="folder with torch and its dependencies (pip download torch==<pin> -d DIR); "
                             "torch is installed from it, offline, unless CPU_/CUDA_TORCH_PIP are given")
    parser.add_argument("--dry-run", action="store_true", help="print the references; build nothing, write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        torch_pin = re.search(r"^ARG TORCH=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
        inputs = BuildInputs(args.ca_bundle, args.torch_wheels)
        buildargs = build_args(args.build_arg, inputs)
        inputs.check(buildargs.get("TORCH", torch_pin))
        source = source_context()
        dirty = bool(git("status", "--porcelain", "--", *context_files()))
        tag = image_tag(version(), git("rev-parse", "--short=7", "HEAD"), dirty, source, build_config(buildargs, inputs))
        refs = image_refs(args.registry, tag, args.targets)
        if args.dry_run:
            print("\n".join(f"{t}: {r}" for t, r in refs.items()))
            return 0
        delivered = (f"kind:{args.kind_load}" if args.kind_load else f"minikube:{args.minikube_load}"
                     if args.minikube_load else "local" if args.no_push else "pushed")
        client = engine()
        built = {}
        with build_context(source, inputs) as context:
            for target, ref in refs.items():
                build(client, context, target, ref, buildargs)
                if delivered == "pushed":
                    push(client, ref)
                elif delivered != "local":
                    load_into(ref, delivered)
                built[target] = Built(ref=ref, image_id=client.images.get(ref).id, delivered=delivered,
                                      built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        print(f"recorded {', '.join(b.ref for b in built.values())} in {write_record(args.record, built)}")
        if SERVE in refs:
            print(f"serve image: {refs[SERVE]} (the predictor's image in k8s/serving/inferenceservice.yaml)")
    except (PadError, subprocess.CalledProcessError) as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
