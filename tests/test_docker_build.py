"""docker/build.py and the Dockerfile, without a Docker engine: context, tags, the build/push calls, the placement rewrite."""

import importlib.util
import re
import shutil
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from pipelines.placement import DEFAULT_PATH, load_placement

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pad_docker_build", ROOT / "docker" / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def test_context_holds_only_what_the_images_install():
    names = tarfile.open(fileobj=BytesIO(build.build_context())).getnames()
    top = {n.split("/")[0] for n in names}
    assert top == {".dockerignore", ".pad.Dockerfile", "README.md", "pyproject.toml", "pad", "padcore", "components", "pipelines"}
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "pipelines/placement.yaml" in names and "padcore/steps.py" in names


def test_tags_are_version_and_sha_never_latest():
    ctx_a, ctx_b = b"context a", b"context b"
    assert build.image_tag("0.1.0", "1a2b3c4", False, ctx_a) == "0.1.0-1a2b3c4"
    dirty_a = build.image_tag("0.1.0", "1a2b3c4", True, ctx_a)
    assert re.fullmatch(r"0\.1\.0-1a2b3c4-dirty-[0-9a-f]{8}", dirty_a)
    assert dirty_a != build.image_tag("0.1.0", "1a2b3c4", True, ctx_b)
    refs = build.image_refs("reg.example/team/", "0.1.0-1a2b3c4")
    assert refs == {t: f"reg.example/team/pad-{t}:0.1.0-1a2b3c4" for t in ("cpu", "gpu", "llm2vec")}


def test_dockerfile_targets_match_the_placement_images():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\w+)$", text, re.M)
    assert set(targets) - {"base", "serve"} == set(build.TARGETS) == set(load_placement().images)
    # every image ends as the non-root user, and pins the torch the project pins
    stages = {re.match(r"\S+ AS (\w+)", s).group(1): s for s in re.split(r"^FROM ", text, flags=re.M)[1:]}
    for name in build.TARGETS:
        assert stages[name].rstrip().splitlines()[-2:] == ["USER 1000:1000", "WORKDIR /home/pad"], name
    torch_pin = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"ARG TORCH={torch_pin}" in text
    assert '".[llm2vec]"' in text.split("AS llm2vec")[1]
    assert "whl/cpu" in text.split("AS cpu")[1].split("FROM")[0]
    # the predictor image (pad serve): the [serve] extra, CPU torch, non-root
    serve = stages["serve"]
    assert '".[serve]"' in serve and "whl/cpu" in serve and 'ENTRYPOINT ["pad", "serve"]' in serve
    assert serve.rstrip().splitlines()[-2:] == ["USER 1000:1000", "WORKDIR /home/pad"]


class FakeDocker:
    """Records the docker SDK calls build.py makes; answers with progress streams."""

    def __init__(self, fail_on: str | None = None):
        self.calls = []
        self.fail_on = fail_on
        self.api = self

    def build(self, **kwargs):
        self.calls.append(("build", kwargs["tag"], kwargs["target"], kwargs["dockerfile"]))
        tar = tarfile.open(fileobj=kwargs["fileobj"])
        assert ".pad.Dockerfile" in tar.getnames() and kwargs["custom_context"]
        if kwargs["tag"] == self.fail_on:
            return iter([{"stream": "Step 1/9\n"}, {"error": "pip install failed"}])
        return iter([{"stream": "Step 1/9\n"}, {"stream": "Successfully built\n"}])

    def push(self, repository, tag, stream, decode):
        self.calls.append(("push", f"{repository}:{tag}"))
        return iter([{"status": "Pushed", "id": "abc"}, {"status": "done"}])


@pytest.fixture
def placement(tmp_path):
    path = tmp_path / "placement.yaml"
    shutil.copy(DEFAULT_PATH, path)
    return path


def test_build_push_and_record(monkeypatch, placement, capsys):
    import docker

    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda: fake)
    assert build.main(["--registry", "reg.example/me", "--targets", "cpu", "gpu", "--placement", str(placement)]) == 0
    images = load_placement(placement).images
    assert images["cpu"].startswith("reg.example/me/pad-cpu:0.1.0-") and images["gpu"].startswith("reg.example/me/pad-gpu:")
    assert images["llm2vec"] == load_placement(DEFAULT_PATH).images["llm2vec"], "targets not built keep their image"
    assert fake.calls == [
        ("build", images["cpu"], "cpu", ".pad.Dockerfile"), ("push", images["cpu"]),
        ("build", images["gpu"], "gpu", ".pad.Dockerfile"), ("push", images["gpu"]),
    ]


def test_kind_load_instead_of_push(monkeypatch, placement):
    import docker

    fake, loaded = FakeDocker(), []
    monkeypatch.setattr(docker, "from_env", lambda: fake)
    monkeypatch.setattr(build, "kind_load", lambda ref, cluster: loaded.append((ref, cluster)))
    assert build.main(["--registry", "pad.local", "--targets", "cpu", "--kind-load", "pad", "--placement", str(placement)]) == 0
    assert [c[0] for c in fake.calls] == ["build"] and loaded == [(load_placement(placement).images["cpu"], "pad")]


def test_failed_build_leaves_the_placement_alone(monkeypatch, placement, capsys):
    import docker

    before = placement.read_text()
    refs = build.image_refs("reg.example/me", "x")
    fake = FakeDocker()
    monkeypatch.setattr(docker, "from_env", lambda: fake)
    monkeypatch.setattr(build, "image_refs", lambda registry, tag, targets: {"cpu": refs["cpu"]})
    fake.fail_on = refs["cpu"]
    assert build.main(["--registry", "reg.example/me", "--placement", str(placement)]) == 2
    assert "pip install failed" in capsys.readouterr().err
    assert placement.read_text() == before


def test_dry_run_prints_and_writes_nothing(placement, capsys):
    before = placement.read_text()
    assert build.main(["--registry", "reg.example/me", "--dry-run", "--placement", str(placement)]) == 0
    out = capsys.readouterr().out
    assert all(f"reg.example/me/pad-{t}:" in out for t in build.TARGETS)
    assert placement.read_text() == before
