"""Installs that match the deployment: the login-node install of aframe-flow pulls no torch, and
the Apptainer definition installs this checkout's wheels (``nox -s build``'s ``dist/``).
(`nox -s build` itself installs the flow wheel alone and runs ``law run ... --help`` there.)"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from helpers.flow import QUICKSTART, ROOT

FLOW = ROOT / "packages" / "aframe-flow"
DEF = QUICKSTART / "apptainer.def"
SIBLINGS = ("aframe-lib", "aframe-train", "aframe-flow")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_a_plain_flow_install_declares_nothing_that_brings_torch():
    project = tomllib.loads((FLOW / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    assert names == {"luigi", "law", "kr8s", "fsspec"}
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["local"]} == {"aframe-train"}  # train on this machine
    assert "aframe-lib" in {_name(r) for r in extras["data"]}  # the data image's generators


def test_no_flow_module_imports_aframe_lib_when_it_is_imported():
    """Top-level imports only (functions that run in the data image may import aframe-lib)."""
    bad = []
    for path in (FLOW / "aframe_flow").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("aframe_lib",
                                                                             "torch")]  # fmt: skip
    assert not bad, bad


def _sections(text: str) -> dict[str, list[str]]:
    sections, current = {}, "header"
    for line in text.splitlines():
        if m := re.match(r"^%(\w+)", line):
            current = m.group(1)
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    return sections


def test_apptainer_definition_copies_and_installs_this_repositorys_wheels():
    text = DEF.read_text()
    # the documented build: wheels first, then the image, from the repository root
    for command in (
        "nox -s build",
        "apptainer build train.sif projects/quickstart/apptainer.def",
        'apptainer build --build-arg WHEELS="aframe_lib aframe_flow[data,s3]" data.sif '
        "projects/quickstart/apptainer.def",
    ):
        assert f"#   {command}" in text, command
    sections = _sections(text)
    assert [line.split() for line in sections["files"] if line.strip()] == [
        ["dist", "/opt/aframe/dist"]
    ]
    arguments = dict(line.strip().split("=", 1) for line in sections["arguments"] if line.strip())
    assert arguments["WHEELS"] == "aframe_lib aframe_train[wandb,s3,tune] aframe_flow[s3]"
    # no package of ours is installed by name from an index
    post = "\n".join(sections["post"])
    assert not re.search(r"pip install[^\n]*\baframe[-_](lib|train|flow)\b", post)
    # the pins are the repository's
    pins = {
        line.split("==")[0]: line.strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert all(pins[p.split("==")[0]] == p for p in arguments["PINS"].split())


def _post_install(wheels: str, dist: Path) -> list[str]:
    """Run %post's wheel-selection lines in sh against ``dist``; what pip would be given."""
    post = _sections(DEF.read_text())["post"]
    start = next(i for i, line in enumerate(post) if line.strip().startswith("requirements="))
    end = next(i for i, line in enumerate(post) if "{{ PINS }}" in line)
    script = "\n".join(post[start:end] + ["echo $requirements"])
    script = script.replace("{{ WHEELS }}", wheels).replace("/opt/aframe/dist", str(dist))
    out = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize(
    "wheels, expected",
    [
        (
            "aframe_lib aframe_train[wandb,s3,tune] aframe_flow[s3]",
            ["aframe_lib-0.1.0-py3-none-any.whl", "aframe_train-0.1.0-py3-none-any.whl"
             "[wandb,s3,tune]", "aframe_flow-0.1.0-py3-none-any.whl[s3]"],
        ),
        (
            "aframe_lib aframe_flow[data,s3]",
            ["aframe_lib-0.1.0-py3-none-any.whl", "aframe_flow-0.1.0-py3-none-any.whl[data,s3]"],
        ),
    ],
)  # fmt: skip
def test_post_installs_each_named_wheel_from_dist_with_its_extras(tmp_path, wheels, expected):
    for p in SIBLINGS:  # the names `nox -s build` (hatchling) gives the wheels
        version = tomllib.loads((ROOT / "packages" / p / "pyproject.toml").read_text())
        name = f"{p.replace('-', '_')}-{version['project']['version']}-py3-none-any.whl"
        (tmp_path / name).write_bytes(b"")
    assert _post_install(wheels, tmp_path) == [str(tmp_path / e) for e in expected]
    # a wheel missing from dist/ fails the build
    (tmp_path / "aframe_lib-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(subprocess.CalledProcessError):
        _post_install(wheels, tmp_path)
