"""Containers for docker/build.py and `pad run --runner docker`: the engine, its images, a step's container.

The engine is any Docker-API socket: Docker's own, or podman's (`podman system
service`) with DOCKER_HOST pointing at it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from padcore.errors import PadError

DOCKER_SOCKET = "unix:///var/run/docker.sock"  # what the docker SDK uses without DOCKER_HOST
PODMAN_HINT = ("start Docker, or podman's Docker-API service: `podman system service --time=0 "
               "unix:///run/podman/podman.sock &` then `export DOCKER_HOST=unix:///run/podman/podman.sock`")


def engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or DOCKER_SOCKET


def engine(timeout: int = 60):
    """A docker SDK client of the engine at DOCKER_HOST, waiting up to `timeout` s for an answer; a PadError that
    says how to start one when none answers."""
    try:
        import docker
    except ImportError as exc:
        raise PadError("talking to a container engine needs the docker package: pip install 'docker>=7.1'") from exc
    try:
        return docker.from_env(timeout=timeout)  # asks the engine for its API version, so a dead socket fails here
    except docker.errors.DockerException as exc:
        raise PadError(f"no container engine answers at {engine_host()} ({exc}); {PODMAN_HINT}") from exc


def missing_images(client, refs: list[str]) -> list[str]:
    """The references in `refs` the engine does not hold."""
    import docker

    missing = []
    for ref in refs:
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            missing.append(ref)
    return missing


def local_folders(params: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[Path, bool]]]:
    """The run parameters with their local folders made absolute, and those folders as (path, writable).

    The containers see them at the same paths: a `files:` source, which they
    read, and a model store (`store`, unless gs://), which they write.
    """
    params, folders = dict(params), []
    kind, _, location = params.get("source", "prime_pantry").partition(":")
    if kind == "files" and location and not location.startswith("gs://"):
        folder = Path(location).expanduser().resolve()
        if not folder.is_dir():
            raise PadError(f"source files:{location}: folder {folder} not found")
        params["source"] = f"files:{folder}"
        folders.append((folder, False))
    store = params.get("store") or ""
    if store and not store.startswith("gs://"):
        folder = Path(store).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        params["store"] = str(folder)
        folders.append((folder, True))
    return params, folders


def run_container(client, image: str, command: list[str], volumes: dict | None = None, **run_args) -> int:
    """Run a step's container to its end, printing its log; its exit code. It stands in for kfp's own.

    kfp 2.17.3 starts the container with auto-remove and then waits on it: the
    wait finds the container gone and reports success whatever the step did, or,
    on podman 4.3's Docker API, misses an exit that already happened and never
    returns. Here the stopped container is inspected for its code, then removed.
    """
    container = client.containers.run(image, command, detach=True, volumes=volumes, **run_args)
    print(f"container {container.short_id} of image {image}", flush=True)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        container.reload()
        while container.status == "running":  # the log can end a moment before the engine records the exit
            time.sleep(0.1)
            container.reload()
        return container.attrs["State"]["ExitCode"]
    finally:
        container.remove(force=True)


def docker_runner(images: dict[str, str], source: str, folders: list[tuple[Path, bool]], env: dict[str, str]):
    """kfp.local's DockerRunner: each step in its image (`images`, target -> ref, for the placement file
    `source`), as the calling user, with its data mounted.

    kfp mounts the pipeline root; the data home (`$PAD_DATA_HOME`: downloads and
    the text cache) and `folders` (see `local_folders`) are mounted here, each at
    its own path, so the artifacts hold the same paths as a subprocess run's.
    """
    from docker.types import Mount
    from kfp import local

    from padcore.download import data_home

    missing = missing_images(engine(), sorted(set(images.values())))
    if missing:
        raise PadError(
            f"the engine at {engine_host()} has no image {', '.join(missing)} (recorded for {source}); "
            "build them with `python docker/build.py --registry pad.local --no-push`, or pull them")
    home = data_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    mounts = [Mount(str(path), str(path), type="bind", read_only=not writable)
              for path, writable in [(home, True), *folders]]
    return local.DockerRunner(mounts=mounts, environment={**env, "PAD_DATA_HOME": str(home)},
                              user=f"{os.getuid()}:{os.getgid()}")


@contextlib.contextmanager
def exit_codes_kept() -> Iterator[None]:
    """While inside, kfp.local's docker task handler runs each step with `run_container` (see there)."""
    from kfp.local import docker_task_handler

    kfp_own = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = kfp_own
