"""Every command of the README's pipeline and cluster sections exists as written: each `pad` and
`docker/build.py` command parses with its real parser, and each file or folder a command names is in the
repository."""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from pad.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("pad_docker_build_readme", ROOT / "docker" / "build.py")
build = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = build
spec.loader.exec_module(build)


def commands() -> list[str]:
    """The shell commands of the bash blocks from "Pipeline: local, KFP UI, schedules" to "Development"."""
    text = (ROOT / "README.md").read_text()
    text = text[text.index("## Pipeline: local, KFP UI, schedules"):text.index("## Development")]
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                found += [part.strip().rstrip("&").strip() for part in re.split(r" && ", line)]
    return found


COMMANDS = commands()


def test_the_sections_have_commands():
    assert sum(c.startswith("pad ") for c in COMMANDS) >= 12 and sum("docker/build.py" in c for c in COMMANDS) >= 6


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("pad ")])
def test_pad_commands_parse(command):
    build_parser().parse_args(shlex.split(command)[1:])


@pytest.mark.parametrize("command", [c for c in COMMANDS if "docker/build.py" in c])
def test_build_commands_parse(command):
    words = shlex.split(command)
    build.build_parser().parse_args(words[words.index("docker/build.py") + 1:])


@pytest.mark.parametrize("command", [c for c in COMMANDS if re.search(r"\b(k8s|pipelines)/", c)])
def test_named_files_exist(command):
    for path in re.findall(r"\b((?:k8s|pipelines)/[\w./-]+)", command):
        assert (ROOT / path).exists(), f"{command}: {path}"
