"""Build the pad images, tag them by version + git SHA, push or load them into kind, record them.

    python docker/build.py --registry ghcr.io/me                      # build, push, rewrite placement
    python docker/build.py --registry pad.local --kind-load pad       # build, load into the kind cluster
    python docker/build.py --registry ghcr.io/me --dry-run            # only print the references

The tag is `<version>-<git sha>` (plus `-dirty-<context digest>` for a tree with
uncommitted changes): never a moving `latest`, because KFP's cache keys on the
image string. The references are written into the `images:` map of the
placement file, so the next `pad pipeline compile` uses them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from padcore.errors import PadError  # noqa: E402
from pipelines.placement import DEFAULT_PATH, set_images  # noqa: E402

TARGETS = ("cpu", "gpu", "llm2vec")  # build targets of docker/Dockerfile = keys of the placement's `images:`
DOCKERFILE = ROOT / "docker" / "Dockerfile"
IGNORE = ROOT / "docker" / ".dockerignore"


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def ignore_patterns() -> list[str]:
    return [line.strip() for line in IGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def build_context() -> bytes:
    """The build context as a tar: the repository root filtered by docker/.dockerignore, plus the Dockerfile."""
    from docker.utils.build import tar

    with tar(str(ROOT), exclude=ignore_patterns(), dockerfile=(".pad.Dockerfile", DOCKERFILE.read_text())) as f:
        return f.read()


def context_files() -> list[str]:
    """Paths the context holds (what .dockerignore lets through)."""
    from docker.utils.build import exclude_paths

    return sorted(exclude_paths(str(ROOT), ignore_patterns()))


def image_tag(version: str, sha: str, dirty: bool, context: bytes) -> str:
    """`<version>-<sha>`; a dirty tree adds the context digest, so two different dirty builds never share a tag."""
    tag = f"{version}-{sha}"
    if dirty:
        tag += f"-dirty-{hashlib.sha256(context).hexdigest()[:8]}"
    return tag


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


def build(client, context: bytes, target: str, ref: str) -> None:
    print(f"==> building {ref} (target {target})", flush=True)
    _stream(
        client.api.build(fileobj=io.BytesIO(context), custom_context=True, dockerfile=".pad.Dockerfile",
                         target=target, tag=ref, rm=True, decode=True),
        f"building {ref}",
    )


def push(client, ref: str) -> None:
    print(f"==> pushing {ref}", flush=True)
    repository, tag = ref.rsplit(":", 1)
    _stream(client.api.push(repository, tag=tag, stream=True, decode=True), f"pushing {ref}")


def kind_load(ref: str, cluster: str) -> None:
    print(f"==> loading {ref} into kind cluster {cluster}", flush=True)
    subprocess.run(["kind", "load", "docker-image", ref, "--name", cluster], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True, help="image repository prefix, e.g. ghcr.io/me or pad.local")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="images to build")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kind-load", metavar="CLUSTER", help="load into this kind cluster instead of pushing")
    where.add_argument("--no-push", action="store_true", help="build only")
    parser.add_argument("--placement", default=str(DEFAULT_PATH), help="placement file to write the references into")
    parser.add_argument("--dry-run", action="store_true", help="print the references; build nothing, write nothing")
    args = parser.parse_args(argv)
    try:
        context = build_context()
        dirty = bool(git("status", "--porcelain", "--", *context_files()))
        refs = image_refs(args.registry, image_tag(version(), git("rev-parse", "--short=7", "HEAD"), dirty, context),
                          args.targets)
        if args.dry_run:
            print("\n".join(f"{t}: {r}" for t, r in refs.items()))
            return 0
        import docker

        client = docker.from_env()
        for target, ref in refs.items():
            build(client, context, target, ref)
            if args.kind_load:
                kind_load(ref, args.kind_load)
            elif not args.no_push:
                push(client, ref)
        set_images(args.placement, refs)
        print(f"wrote the image references into {args.placement}")
    except (PadError, subprocess.CalledProcessError) as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
