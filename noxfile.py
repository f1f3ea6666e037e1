"""Development sessions for the aframe monorepo.

Every session except ``build`` shares one virtual environment that lives outside the clone,
under ``$AFRAME_ENV_HOME`` (default ``~/.cache/aframe/envs``), in a folder named by a hash of
the files that declare dependencies (``constraints.txt``, the root ``pyproject.toml`` and the three
``packages/*/pyproject.toml``). A changed dependency therefore gets a fresh environment, and nothing
installed by hand into an old one can hide a missing declaration. The third-party dependencies
are read from those files (never listed here twice); the project's own three packages are
reinstalled from the working tree on every run. Environments of other hashes that nobody is
using are deleted, so throwaway venvs do not pile up on the shared disk.

    nox -s quickstart   # synthetic data -> training -> exported model -> report
    nox -s tests        # the default test suite (< 15 min on 2 CPUs)
    nox -s tests_slow   # the slow tests
    nox -s lint         # ruff + layering check
    nox -s docs         # the documentation site (mkdocs --strict) into site/
    nox -s build        # three wheels, each installed alone in a fresh venv and imported
    nox -s bench        # benchmarks under bench/lib/ and bench/train/
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGES = ["aframe-lib", "aframe-train", "aframe-flow"]
IMPORT_NAMES = {p: p.replace("-", "_") for p in PACKAGES}
CONSTRAINTS = ROOT / "constraints.txt"
DEP_FILES = [CONSTRAINTS, ROOT / "pyproject.toml"] + [
    ROOT / "packages" / p / "pyproject.toml" for p in PACKAGES
]
ENV_HOME = Path(os.environ.get("AFRAME_ENV_HOME", "~/.cache/aframe/envs")).expanduser()
# an unused environment of another hash is deleted once it has been idle this long
STALE_SECONDS = float(os.environ.get("AFRAME_ENV_STALE_SECONDS", 3 * 3600))

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]

_SIBLING = re.compile(r"^\s*aframe-(lib|train|flow)\b")


def _dep_hash() -> str:
    h = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for path in DEP_FILES:
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _third_party_requirements() -> list[str]:
    """Every dependency and extra of the three packages, and the dev group, minus siblings."""
    reqs: list[str] = []
    for p in PACKAGES:
        project = tomllib.loads((ROOT / "packages" / p / "pyproject.toml").read_text())["project"]
        reqs += project.get("dependencies", [])
        for extra in project.get("optional-dependencies", {}).values():
            reqs += extra
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs += root["dependency-groups"]["dev"]
    return sorted({r for r in reqs if not _SIBLING.match(r)})


def _prune(keep: Path) -> None:
    """Delete environments of other hashes that no running session holds and that went stale."""
    for env in ENV_HOME.glob("env-*"):
        if env == keep or not env.is_dir():
            continue
        lock = env / ".in-use"
        last = env / ".last-used"
        age = time.time() - (last.stat().st_mtime if last.exists() else env.stat().st_mtime)
        if age < STALE_SECONDS:
            continue
        try:
            with open(lock, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(env, ignore_errors=True)
        except OSError:
            continue  # somebody is using it


# imports every module of a package: a dependency used but not declared fails here
_IMPORT_ALL = """
import importlib, pkgutil
import {name} as m
mods = [i.name for i in pkgutil.walk_packages(m.__path__, m.__name__ + ".")
        if not i.name.endswith("__main__")]
for mod in mods:
    importlib.import_module(mod)
print(m.__name__, m.__version__, "and", len(mods), "modules import")
"""

_HELD: list = []  # lock files held for the life of this nox process


def shared_env(session: nox.Session) -> dict[str, str]:
    """Create (once per dependency hash) and return the environment variables of the shared venv."""
    ENV_HOME.mkdir(parents=True, exist_ok=True)
    env = ENV_HOME / f"env-{_dep_hash()}"
    with open(ENV_HOME / ".create.lock", "a") as create_lock:
        fcntl.flock(create_lock, fcntl.LOCK_EX)
        if not (env / ".complete").exists():
            # a half-built environment (a killed install) never counts as done
            shutil.rmtree(env, ignore_errors=True)
            session.log(f"creating shared environment {env}")
            session.run(sys.executable, "-m", "venv", str(env), external=True)
            pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            session.run(*pip, "--upgrade", "pip", external=True)
            session.run(*pip, "-c", str(CONSTRAINTS), *_third_party_requirements(), external=True)
            (env / ".complete").write_text(_dep_hash())
        in_use = open(env / ".in-use", "a")  # noqa: SIM115 - held until nox exits
        fcntl.flock(in_use, fcntl.LOCK_SH)
        _HELD.append(in_use)
        (env / ".last-used").touch()
        _prune(keep=env)
    # the project's own packages: reinstalled from this tree on every run
    session.run(
        str(env / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--force-reinstall",
        "--no-build-isolation",
        *[str(ROOT / "packages" / p) for p in PACKAGES],
        external=True,
    )
    return {
        "VIRTUAL_ENV": str(env),
        "PATH": f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "PYTHONNOUSERSITE": "1",
    }


def _run(session: nox.Session, env: dict[str, str], program: str, *args: str) -> None:
    """Run ``program`` from the shared environment (nox resolves names on its own PATH)."""
    local = Path(env["VIRTUAL_ENV"]) / "bin" / program
    session.run(str(local) if local.exists() else program, *args, env=env, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite: everything not marked slow."""
    env = shared_env(session)
    # the slowest tests are listed after every run: the suite's 15-minute budget is kept by
    # moving what grows there to tests_slow
    _run(session, env, "python", "-m", "pytest", "-m", "not slow", "--durations=20",
         *session.posargs)  # fmt: skip


@nox.session
def tests_slow(session: nox.Session) -> None:
    """The slow tests (longer trainings, bigger searches)."""
    env = shared_env(session)
    local = Path(env["VIRTUAL_ENV"]) / "bin" / "python"
    # exit 5: no test selected (e.g. a -k that matches no slow test), not a failure
    session.run(str(local), "-m", "pytest", "-m", "slow", *session.posargs, env=env,
                external=True, success_codes=[0, 5])  # fmt: skip


@nox.session
def quickstart(session: nox.Session) -> None:
    """Synthetic data -> training -> exported model -> report, in ./quickstart-run (or posargs)."""
    env = shared_env(session)
    out = session.posargs[0] if session.posargs else str(ROOT / "quickstart-run")
    _run(session, env, "python", str(ROOT / "projects" / "quickstart" / "run.py"), out)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check), the layering rule lib <- train <- flow, the image definitions
    (hadolint) and the CI workflows (actionlint), all offline."""
    env = shared_env(session)
    _run(session, env, "ruff", "check", ".")
    _run(session, env, "ruff", "format", "--check", ".")
    _run(session, env, "python", "-m", "pytest", "-q", "tests/integration/test_layers.py")
    containerfiles = sorted(str(p) for p in (ROOT / "projects").rglob("*.Containerfile"))
    _run(session, env, "hadolint", *containerfiles)
    _run(session, env, "actionlint", *sorted(str(p) for p in ROOT.glob(".github/workflows/*.yml")))


@nox.session(venv_backend="venv")
def image(session: nox.Session) -> None:
    """The OCI training image (projects/images/train.Containerfile) from this checkout's wheels,
    with buildah or podman. Posargs go to projects/images/build.py: --push REGISTRY,
    --local-base (a debootstrap base: no registry needed), --tool podman, --dry-run ...
    Its own small venv: building the wheels needs only `build` and `hatchling` (the dev
    group's), the rest is installed inside the image."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    session.install(*[r for r in dev if re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] in
                      ("build", "hatchling")])  # fmt: skip
    session.run("python", str(ROOT / "projects" / "images" / "build.py"), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/): `mkdocs build --strict`, so a broken link, an
    unresolved reference or a docstring mkdocstrings cannot read fails. Into site/ (or posargs)."""
    env = shared_env(session)
    out = session.posargs[0] if session.posargs else str(ROOT / "site")
    env = {**env, "NO_MKDOCS_2_WARNING": "1"}
    _run(session, env, "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", out)  # fmt: skip


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks under bench/<area>/ (lib, train): each prints its headlines as `name: value`
    lines. Posargs: the scripts to run (default: every bench/**/*.py not named _*)."""
    env = shared_env(session)
    scripts = session.posargs or sorted(
        str(p) for p in (ROOT / "bench").rglob("*.py") if not p.name.startswith("_")
    )
    for script in scripts:
        _run(session, env, "python", script)


# the login-node install: aframe-flow alone brings no torch and no aframe-lib/-train, and its
# documented steps work there (`python -m aframe_flow init`, then `law run ... --help`)
_FLOW_ALONE = """
import importlib.util, subprocess, sys, tempfile, os
heavy = [m for m in ("torch", "aframe_lib", "aframe_train", "ml4gw", "lightning")
         if importlib.util.find_spec(m) is not None]
assert not heavy, f"pip install aframe-flow pulled {heavy}"
law = os.path.join(os.path.dirname(sys.executable), "law")
with tempfile.TemporaryDirectory() as tmp:
    env = {**os.environ, "LAW_HOME": os.path.join(tmp, "home")}
    env.pop("LAW_CONFIG_FILE", None)
    subprocess.run([sys.executable, "-m", "aframe_flow", "init", tmp], check=True, env=env)
    out = subprocess.run([law, "run", "aframe_flow.Train", "--help"], cwd=tmp, env=env,
                         check=True, capture_output=True, text=True).stdout
    assert "--gpus" in out and "--config" in out, out
    subprocess.run([law, "index"], cwd=tmp, env=env, check=True)
    index = open(os.path.join(tmp, "home", "index")).read()
    assert ":TunePipeline:" in index, index
print("aframe-flow alone: no torch; law run aframe_flow.Train --help and law index work")
"""


@nox.session
def build(session: nox.Session) -> None:
    """Build the three wheels; install each alone in a fresh venv with only what it declares
    (aframe-flow alone: no torch, and `law run aframe_flow.Train --help` works)."""
    env = shared_env(session)
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for p in PACKAGES:
        _run(
            session,
            env,
            "python",
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT / "packages" / p),
        )
    for p in PACKAGES:
        with tempfile.TemporaryDirectory(prefix=f"aframe-build-{p}-") as tmp:
            venv = Path(tmp) / "venv"
            session.run(sys.executable, "-m", "venv", str(venv), external=True)
            py = str(venv / "bin" / "python")
            # siblings come from the freshly built wheels, never from an index
            session.run(
                py,
                "-m",
                "pip",
                "install",
                "--quiet",
                "-c",
                str(CONSTRAINTS),
                "--find-links",
                str(dist),
                p,
                external=True,
            )
            session.run(py, "-m", "pip", "check", external=True)
            session.run(
                py,
                "-c",
                _IMPORT_ALL.format(name=IMPORT_NAMES[p]),
                external=True,
            )
            if p == "aframe-flow":
                session.run(py, "-c", _FLOW_ALONE, external=True)
        # the TemporaryDirectory (several GB with torch) is deleted here
