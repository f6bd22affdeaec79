"""docker/build.py and the Dockerfile, without a Docker engine: context, build inputs and arguments, tags, the
build/push/load calls, the image record. tests/containers/run.sh builds the images for real."""

import importlib.util
import re
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from pipelines.images import read_record
from pipelines.placement import TARGETS, load_placement

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pad_docker_build", ROOT / "docker" / "build.py")
build = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = build  # dataclasses look their module up there
spec.loader.exec_module(build)
PEM = "-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n"


def test_context_holds_only_what_the_images_install():
    names = tarfile.open(fileobj=BytesIO(build.source_context())).getnames()
    top = {n.split("/")[0] for n in names}
    assert top == {".dockerignore", ".pad.Dockerfile", "README.md", "pyproject.toml", "pad", "padcore", "components", "pipelines"}
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "pipelines/placement.yaml" in names and "padcore/steps.py" in names


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "ca.pem").write_text(PEM)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "sympy-1.14.0-py3-none-any.whl"):
        (wheels / name).write_bytes(b"wheel " + name.encode())
    return build.BuildInputs(tmp_path / "ca.pem", wheels)


def test_build_inputs_go_under_pad_build_and_the_builder_keeps_them(inputs):
    with build.build_context(build.source_context(), inputs) as f:
        tar = tarfile.open(fileobj=f)
        names = tar.getnames()
        assert tar.extractfile(".pad-build/ca.crt").read().decode() == PEM
        assert tar.extractfile(".pad-build/wheels/sympy-1.14.0-py3-none-any.whl").read() == b"wheel sympy-1.14.0-py3-none-any.whl"
        # the builder applies the context's .dockerignore, which excludes all but what it lets through
        assert tar.extractfile(".dockerignore").read().decode().splitlines()[-1] == "!.pad-build/"
    assert ".pad-build" in names and "padcore/steps.py" in names
    with build.build_context(build.source_context(), build.BuildInputs()) as f:
        assert [n for n in tarfile.open(fileobj=f).getnames() if n.startswith(".pad-build")] == [".pad-build"]


def test_images_take_nothing_from_the_build_stages_but_the_venv():
    stages = dict(re.findall(r"^FROM \S+ AS ([\w-]+)\n(.*?)(?=^FROM |\Z)", (ROOT / "docker" / "Dockerfile").read_text(),
                             re.M | re.S))
    assert {name for name, body in stages.items() if "pad-build" in body} == {"build"}
    assert f"COPY {build.BUILD_INPUTS}/ /tmp/pad-build/" in stages["build"] and "/tmp/pad-build/wheels" in build.WHEELS_PIP
    for target in build.ALL_TARGETS:
        assert re.findall(r"^COPY .*$", stages[target], re.M) == [f"COPY --from={target}-venv /opt/venv /opt/venv"]


def test_wheels_make_torch_come_from_them_unless_told_otherwise(inputs):
    args = build.build_args(["BASE=pad.local/debian:bookworm-python3"], inputs)
    assert args == {"BASE": "pad.local/debian:bookworm-python3", "CPU_TORCH_PIP": build.WHEELS_PIP,
                    "CUDA_TORCH_PIP": build.WHEELS_PIP}
    mine = "--index-url https://mirror.example/whl/cu128"
    assert build.build_args([f"CUDA_TORCH_PIP={mine}"], inputs)["CUDA_TORCH_PIP"] == mine
    assert build.build_args(["HTTPS_PROXY=http://proxy:3128"], build.BuildInputs()) == {"HTTPS_PROXY": "http://proxy:3128"}


@pytest.mark.parametrize("pair, message", [
    ("TORCH_INDEX=x", "not an ARG of docker/Dockerfile"),
    ("BASE", "expected NAME=VALUE"),
])
def test_bad_build_args_are_named(pair, message):
    with pytest.raises(build.PadError, match=message):
        build.build_args([pair], build.BuildInputs())


def test_bad_build_inputs_are_named(tmp_path, inputs):
    (tmp_path / "not-a-ca.txt").write_text("hello")
    with pytest.raises(build.PadError, match="no PEM certificate"):
        build.BuildInputs(ca_bundle=tmp_path / "not-a-ca.txt").check("2.13.0")
    with pytest.raises(build.PadError, match="file not found"):
        build.BuildInputs(ca_bundle=tmp_path / "missing.pem").check("2.13.0")
    with pytest.raises(build.PadError, match=r"no torch-2\.14\.0\*\.whl there; fill it with `pip download torch==2\.14\.0"):
        inputs.check("2.14.0")
    inputs.check("2.13.0")


def test_tags_are_version_and_sha_never_latest():
    ctx_a, ctx_b = b"context a", b"context b"
    assert build.image_tag("0.1.0", "1a2b3c4", False, ctx_a) == "0.1.0-1a2b3c4"
    dirty_a = build.image_tag("0.1.0", "1a2b3c4", True, ctx_a)
    assert re.fullmatch(r"0\.1\.0-1a2b3c4-dirty-[0-9a-f]{8}", dirty_a)
    assert dirty_a != build.image_tag("0.1.0", "1a2b3c4", True, ctx_b)
    refs = build.image_refs("reg.example/team/", "0.1.0-1a2b3c4")
    assert refs == {t: f"reg.example/team/pad-{t}:0.1.0-1a2b3c4" for t in ("cpu", "gpu", "llm2vec")}


def test_build_arguments_and_wheels_are_in_the_tag(inputs):
    """Two builds of one commit with other arguments are two images: they never share a tag (KFP caches on it)."""
    plain = build.image_tag("0.1.0", "1a2b3c4", False, b"c", build.build_config({}, build.BuildInputs()))
    assert plain == "0.1.0-1a2b3c4"
    base = build.build_config({"BASE": "my.mirror/python:3.11-slim"}, build.BuildInputs())
    other = build.build_config({"BASE": "my.mirror/python:3.12-slim"}, build.BuildInputs())
    tagged = build.image_tag("0.1.0", "1a2b3c4", False, b"c", base)
    assert re.fullmatch(r"0\.1\.0-1a2b3c4-cfg-[0-9a-f]{8}", tagged)
    assert tagged != build.image_tag("0.1.0", "1a2b3c4", False, b"c", other)
    proxied = build.build_config({"BASE": "my.mirror/python:3.11-slim", "HTTPS_PROXY": "http://p:3128"},
                                 build.BuildInputs())
    assert build.image_tag("0.1.0", "1a2b3c4", False, b"c", proxied) == tagged, "a proxy changes no image"
    wheels = build.build_config({}, build.BuildInputs(torch_wheels=inputs.torch_wheels))
    assert wheels and all(k.startswith("wheel:") for k in wheels)


def test_dockerfile_targets_match_the_placement_images():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    images = set(re.findall(r"^FROM base AS ([\w-]+)$", text, re.M)) - {"build"}  # the runtime stages
    assert images == set(build.ALL_TARGETS) and set(build.TARGETS) == set(TARGETS)
    for shape in ("gke", "kind", "minikube"):  # every image a shipped placement names is one build.py makes
        assert set(load_placement(shape).targets()) <= set(build.TARGETS), shape
    # every image ends as the non-root user, and pins the torch the project pins
    stages = {re.match(r"\S+ AS ([\w-]+)", s).group(1): s for s in re.split(r"^FROM ", text, flags=re.M)[1:]}
    for name in build.ALL_TARGETS:
        assert stages[name].rstrip().splitlines()[-2:] == ["USER 1000:1000", "WORKDIR /home/pad"], name
    torch_pin = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"ARG TORCH={torch_pin}" in text
    assert '"/tmp/pad-src[llm2vec]"' in stages["llm2vec-venv"] and '"/tmp/pad-src[serve]"' in stages["serve-venv"]
    assert "whl/cpu" in stages["cpu-torch"] and "whl/cu" in stages["cuda-torch"]
    assert not text.startswith("# syntax="), "BuildKit would fetch the syntax image from a registry"
    # the predictor image (pad serve): the [serve] extra on CPU torch, non-root
    assert "FROM cpu-torch AS serve-venv" in text and 'ENTRYPOINT ["pad", "serve"]' in stages["serve"]


class FakeDocker:
    """Records the docker SDK calls build.py makes; answers with progress streams."""

    def __init__(self, fail_on: str | None = None):
        self.calls = []
        self.fail_on = fail_on
        self.api = self
        self.images = self

    def get(self, ref):
        return type("Image", (), {"id": f"sha256:{ref}"})()

    def build(self, **kwargs):
        self.calls.append(("build", kwargs["tag"], kwargs["target"], kwargs["dockerfile"]))
        self.buildargs = kwargs["buildargs"]
        self.context_names = tarfile.open(fileobj=kwargs["fileobj"]).getnames()
        assert ".pad.Dockerfile" in self.context_names and kwargs["custom_context"]
        if kwargs["tag"] == self.fail_on:
            return iter([{"stream": "Step 1/9\n"}, {"error": "pip install failed"}])
        return iter([{"stream": "Step 1/9\n"}, {"stream": "Successfully built\n"}])

    def push(self, repository, tag, stream, decode):
        self.calls.append(("push", f"{repository}:{tag}"))
        return iter([{"status": "Pushed", "id": "abc"}, {"status": "done"}])


@pytest.fixture
def record(tmp_path):
    return tmp_path / "pad-images.json"


def test_build_push_and_record(monkeypatch, record, capsys):
    import docker

    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda **_: fake)
    assert build.main(["--registry", "reg.example/me", "--targets", "cpu", "gpu", "--record", str(record)]) == 0
    built = read_record(record)
    assert set(built) == {"cpu", "gpu"} and all(b.delivered == "pushed" for b in built.values())
    cpu, gpu = built["cpu"].ref, built["gpu"].ref
    assert cpu.startswith("reg.example/me/pad-cpu:0.1.0-") and gpu.startswith("reg.example/me/pad-gpu:")
    assert built["cpu"].image_id == f"sha256:{cpu}"
    assert fake.calls == [("build", cpu, "cpu", ".pad.Dockerfile"), ("push", cpu),
                          ("build", gpu, "gpu", ".pad.Dockerfile"), ("push", gpu)]
    # a later build of another target adds to the record
    assert build.main(["--registry", "reg.example/me", "--targets", "llm2vec", "--record", str(record)]) == 0
    assert set(read_record(record)) == {"cpu", "gpu", "llm2vec"}


def test_a_build_changes_no_tracked_file(monkeypatch, record):
    """The record lies outside the build context and git, so building twice gives one tag, not a dirty one."""
    import docker

    monkeypatch.setattr(docker, "from_env", lambda **_: FakeDocker())
    before = build.git("status", "--porcelain")
    tags = []
    for _ in range(2):
        assert build.main(["--registry", "pad.local", "--targets", "cpu", "--no-push", "--record", str(record)]) == 0
        tags.append(read_record(record)["cpu"].ref)
    assert build.git("status", "--porcelain") == before and tags[0] == tags[1]
    assert "pad-images.json" not in build.context_files()


def test_build_args_and_inputs_reach_the_engine(monkeypatch, record, inputs):
    import docker

    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda **_: fake)
    assert build.main(["--registry", "pad.local", "--targets", "cpu", "--no-push", "--record", str(record),
                       "--build-arg", "BASE=pad.local/debian:bookworm-python3", "--ca-bundle", str(inputs.ca_bundle),
                       "--torch-wheels", str(inputs.torch_wheels)]) == 0
    assert [c[0] for c in fake.calls] == ["build"]
    assert fake.buildargs == {"BASE": "pad.local/debian:bookworm-python3", "CPU_TORCH_PIP": build.WHEELS_PIP,
                              "CUDA_TORCH_PIP": build.WHEELS_PIP}
    assert {".pad-build/ca.crt", ".pad-build/wheels/sympy-1.14.0-py3-none-any.whl"} <= set(fake.context_names)
    assert read_record(record)["cpu"].delivered == "local" and "-cfg-" in read_record(record)["cpu"].ref


def test_the_serve_image_is_built_and_recorded(monkeypatch, record, capsys):
    import docker

    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda **_: fake)
    assert build.main(["--registry", "pad.local", "--targets", "serve", "--no-push", "--record", str(record)]) == 0
    ref = fake.calls[0][1]
    assert fake.calls == [("build", ref, "serve", ".pad.Dockerfile")] and ref.startswith("pad.local/pad-serve:0.1.0-")
    assert read_record(record)["serve"].ref == ref
    assert f"serve image: {ref}" in capsys.readouterr().out


def test_no_engine_is_a_clear_error(monkeypatch, record, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert build.main(["--registry", "pad.local", "--targets", "cpu", "--record", str(record)]) == 2
    err = capsys.readouterr().err
    assert "no container engine answers at unix:///nonexistent/docker.sock" in err and "podman system service" in err
    assert not record.exists()


@pytest.mark.parametrize("flag, delivered, command", [
    ("--kind-load", "kind:pad", ["kind", "load", "docker-image", "REF", "--name", "pad"]),
    ("--minikube-load", "minikube:pad", ["minikube", "image", "load", "REF", "--profile", "pad"]),
])
def test_load_into_a_local_cluster_instead_of_push(monkeypatch, record, flag, delivered, command):
    import subprocess

    import docker

    fake, ran, real = FakeDocker(), [], subprocess.run
    monkeypatch.setattr(docker, "from_env", lambda **_: fake)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: real(cmd, **kw) if cmd[0] == "git" else ran.append(cmd))
    assert build.main(["--registry", "pad.local", "--targets", "cpu", flag, "pad", "--record", str(record)]) == 0
    ref = read_record(record)["cpu"].ref
    assert [c[0] for c in fake.calls] == ["build"] and ran == [[ref if a == "REF" else a for a in command]]
    assert read_record(record)["cpu"].delivered == delivered


def test_failed_build_records_nothing(monkeypatch, record, capsys):
    import docker

    refs = build.image_refs("reg.example/me", "x")
    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda **_: fake)
    monkeypatch.setattr(build, "image_refs", lambda registry, tag, targets: {"cpu": refs["cpu"]})
    fake.fail_on = refs["cpu"]
    assert build.main(["--registry", "reg.example/me", "--record", str(record)]) == 2
    assert "pip install failed" in capsys.readouterr().err
    assert not record.exists()


def test_dry_run_prints_and_writes_nothing(record, capsys):
    assert build.main(["--registry", "reg.example/me", "--dry-run", "--record", str(record)]) == 0
    out = capsys.readouterr().out
    assert all(f"reg.example/me/pad-{t}:" in out for t in build.TARGETS)
    assert not record.exists()
