"""Build the aframe training image (projects/images/train.Containerfile) with buildah or podman.

    python projects/images/build.py [--tool buildah|podman] [--push REGISTRY] [--local-base]
        [--base IMAGE] [--dist DIR] [--network host] [--isolation chroot] [--pip-cert FILE]
        [--dry-run]

(``nox -s image -- ARGS`` runs this in a venv with ``build`` and ``hatchling``.) Steps:

1. the three wheels of this checkout (``python -m build --wheel``, as ``nox -s build`` makes
   them) into a build context beside ``constraints.txt`` (``--dist DIR``: take them from DIR);
2. with ``--local-base``: a Debian root file system made by debootstrap (no container registry
   needed; Debian's package mirror is) imported as ``localhost/aframe/base:<suite>``
   (projects/images/base.Containerfile), used as the ``BASE`` build argument;
3. ``<tool> build`` of train.Containerfile, tagged ``localhost/aframe/train:<tag>`` for each
   tag: ``<aframe-flow version>`` (the image the launcher of that version starts by default)
   and ``<version>-g<git revision>``; a tree with uncommitted changes gets only
   ``<version>-g<revision>-dirty``. The three packages' versions, the revision and the Ray
   version are labels;
4. with ``--push REGISTRY`` (e.g. ``ghcr.io/ml4gw/aframe``): each tag as ``REGISTRY/train:<tag>``,
   pushed (log in first: ``buildah login ghcr.io``).

It prints ``name: value`` lines at the end (the image, its tags, build seconds, size).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PACKAGES = ("aframe-lib", "aframe-train", "aframe-flow")
LOCAL_NAME = "localhost/aframe/train"  # the image's name before it is pushed
IMAGE = "train"  # its name below a registry: REGISTRY/train:TAG
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
TOOLS = ("buildah", "podman")
PIP_CERT_MOUNT = "/tmp/aframe-build-ca.pem"  # where --pip-cert is mounted during the build


class BuildError(Exception):
    """A problem the user fixes (no tool, no debootstrap, not root): one message, exit 2."""


def versions(root: Path = ROOT) -> dict[str, str]:
    """``{package: version}`` of the three packages, from their pyproject.toml files."""
    out = {}
    for p in PACKAGES:
        project = tomllib.loads((root / "packages" / p / "pyproject.toml").read_text())["project"]
        out[p] = project["version"]
    return out


def wheels(dist: Path, root: Path = ROOT) -> list[Path]:
    """The wheel files of this checkout's three packages in ``dist`` (hatchling's names)."""
    names = [f"{p.replace('-', '_')}-{v}-py3-none-any.whl" for p, v in versions(root).items()]
    files = [dist / name for name in names]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise BuildError(f"--dist {dist}: no {', '.join(missing)} there; run nox -s build")
    return files


def ray_version(root: Path = ROOT) -> str:
    """Ray's pin in constraints.txt (the launcher's RAY_VERSION; a test checks they agree)."""
    pins = re.findall(r"^ray(?:\[[^\]]*\])?==(\S+)", (root / "constraints.txt").read_text(), re.M)
    if len(pins) != 1:
        raise BuildError(f"{root / 'constraints.txt'}: expected one ray== pin, found {pins}")
    return pins[0]


def git_revision(root: Path = ROOT) -> tuple[str, bool]:
    """``(short revision, whether tracked or untracked-not-ignored files differ from it)``."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(
            f"{root}: not a git checkout, the image's tag needs its revision ({exc})"
        ) from None
    return rev, dirty


def tags(flow_version: str, rev: str, dirty: bool) -> list[str]:
    """The image's tags: the launcher's default (the aframe-flow version) and the revision's."""
    if dirty:
        return [f"{flow_version}-g{rev}-dirty"]
    return [flow_version, f"{flow_version}-g{rev}"]


def labels(vers: dict[str, str], rev: str, dirty: bool, ray: str) -> dict[str, str]:
    out = {
        "org.opencontainers.image.version": vers["aframe-flow"],
        "org.opencontainers.image.revision": rev + ("-dirty" if dirty else ""),
        "io.ray.version": ray,
    }
    out.update({f"org.ml4gw.aframe.{p}.version": v for p, v in vers.items()})
    return out


def find_tool(name: str | None) -> str:
    """``name`` (buildah or podman), else the first of them on PATH."""
    for tool in [name] if name else TOOLS:
        if shutil.which(tool):
            return tool
    wanted = name or "buildah or podman"
    raise BuildError(
        f"{wanted} is not installed: apt-get install -y {name or 'buildah'} (or give "
        "--tool podman / --tool buildah for the other one)"
    )


def plan(
    tool: str,
    context: Path,
    image_tags: list[str],
    image_labels: dict[str, str],
    dist: Path | None = None,
    base: str | None = None,
    local_base: str | None = None,
    push: str | None = None,
    network: str | None = None,
    isolation: str | None = None,
    pip_cert: Path | None = None,
    python: str = sys.executable,
    root: Path = ROOT,
    mirror: str = "http://deb.debian.org/debian",
) -> list[list[str]]:
    """Every command of a build, in order (run by :func:`main`; ``--dry-run`` prints them).

    Args:
        tool: ``buildah`` or ``podman`` (their ``build``/``tag``/``push`` take the same flags).
        context: the (empty) build context directory: ``dist/`` and ``constraints.txt`` go there.
        dist: wheels already built; ``None``: build them into ``context/dist``.
        base: the ``BASE`` build argument; ``None``: the Containerfile's default.
        local_base: a Debian suite (``bookworm``): make the base with debootstrap instead.
        push: a registry (``ghcr.io/ml4gw/aframe``): tag ``REGISTRY/train:TAG`` and push.
        network: the build's network mode (``host`` where the default bridge is unavailable).
        isolation: how RUN steps are isolated (``chroot`` where the OCI runtime cannot make
            containers, e.g. on hosts with cgroups in hybrid mode).
        pip_cert: a CA bundle pip needs (a TLS-intercepting proxy's), bind-mounted into the
            build's steps at :data:`PIP_CERT_MOUNT` (never copied into the image).
    """
    cmds: list[list[str]] = []
    out = context / "dist"
    if dist is None:
        for p in PACKAGES:
            cmds.append([python, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                         str(out), str(root / "packages" / p)])  # fmt: skip
    else:  # this checkout's versions only (dist/ may hold older wheels too)
        cmds += [["mkdir", "-p", str(out)], ["cp", *map(str, wheels(dist, root)), str(out)]]
    cmds.append(["cp", str(root / "constraints.txt"), str(context / "constraints.txt")])
    net = [f"--network={network}"] if network else []
    net += [f"--isolation={isolation}"] if isolation else []
    if local_base:
        rootfs, base_ctx = context.parent / "rootfs", context.parent / "base-context"
        base = f"localhost/aframe/base:{local_base}"
        cmds += [
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             local_base, str(rootfs), mirror],
            ["mkdir", "-p", str(base_ctx)],
            ["tar", "-C", str(rootfs), "-cf", str(base_ctx / "rootfs.tar"), "."],
            [tool, "build", *net, "-f", str(HERE / "base.Containerfile"), "-t", base,
             str(base_ctx)],
        ]  # fmt: skip
    build = [tool, "build", "--layers", *net, "-f", str(HERE / "train.Containerfile")]
    if base:
        build += ["--build-arg", f"BASE={base}"]
    if pip_cert:
        build += ["--volume", f"{pip_cert}:{PIP_CERT_MOUNT}:ro",
                  "--build-arg", f"PIP_CERT={PIP_CERT_MOUNT}"]  # fmt: skip
    for key, value in image_labels.items():
        build += ["--label", f"{key}={value}"]
    for tag in image_tags:
        build += ["-t", f"{LOCAL_NAME}:{tag}"]
    cmds.append([*build, str(context)])
    if push:
        for tag in image_tags:
            remote = f"{push.rstrip('/')}/{IMAGE}:{tag}"
            cmds += [[tool, "tag", f"{LOCAL_NAME}:{tag}", remote], [tool, "push", remote]]
    return cmds


def image_size(tool: str, name: str) -> str:
    """The image's size as the tool reports it (bytes for podman, text for buildah)."""
    if tool == "podman":
        cmd = [tool, "image", "inspect", "--format", "{{.Size}}", name]
    else:
        cmd = [tool, "images", "--noheading", "--format", "{{.Size}}", name]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()  # buildah: one line per tag of the image
    return lines[0].strip() if lines else "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=TOOLS, help="default: buildah, else podman")
    parser.add_argument(
        "--push",
        metavar="REGISTRY",
        help="push the tags as REGISTRY/train:TAG, e.g. ghcr.io/ml4gw/aframe",
    )
    parser.add_argument(
        "--base",
        metavar="IMAGE",
        help="base image (BASE build argument); default: python:3.11-slim",
    )
    parser.add_argument(
        "--local-base",
        nargs="?",
        const="bookworm",
        metavar="SUITE",
        help="make the base with debootstrap from Debian SUITE (default bookworm)"
        " instead of pulling one; needs root and debootstrap",
    )
    parser.add_argument(
        "--mirror", default="http://deb.debian.org/debian", help="Debian mirror of --local-base"
    )
    parser.add_argument(
        "--dist",
        type=Path,
        metavar="DIR",
        help="take the wheels from DIR (nox -s build's dist/) instead of building",
    )
    parser.add_argument(
        "--network", metavar="MODE", help="network of the build's RUN steps, e.g. host"
    )
    parser.add_argument(
        "--isolation",
        choices=("oci", "chroot", "rootless"),
        help="isolation of the build's RUN steps; chroot where the OCI runtime "
        "fails (e.g. cgroups in hybrid mode)",
    )
    parser.add_argument(
        "--pip-cert",
        type=Path,
        metavar="FILE",
        help="CA bundle for pip inside the build (behind a TLS-intercepting proxy), mounted "
        "for the build only",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)  # fmt: skip
    if args.base and args.local_base:
        parser.error("--base and --local-base exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tool = args.tool or ("buildah" if args.dry_run else find_tool(None))
        if not args.dry_run:
            find_tool(tool)
            if args.local_base and (shutil.which("debootstrap") is None or os.geteuid() != 0):
                raise BuildError(
                    "--local-base runs debootstrap as root: apt-get install -y debootstrap, and "
                    "run as root (or give --base IMAGE)"
                )
        if args.dist is not None:
            wheels(args.dist)
        vers = versions()
        rev, dirty = git_revision()
        image_tags = tags(vers["aframe-flow"], rev, dirty)
        image_labels = labels(vers, rev, dirty, ray_version())
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if dirty:
        print(f"warning: uncommitted changes: tagged {image_tags[0]} only (not the "
              f"launcher's default {vers['aframe-flow']})", file=sys.stderr)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aframe-image-") as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        cmds = plan(tool, context, image_tags, image_labels, dist=args.dist, base=args.base,
                    local_base=args.local_base, push=args.push, network=args.network,
                    isolation=args.isolation, pip_cert=args.pip_cert,
                    mirror=args.mirror)  # fmt: skip
        start = time.monotonic()
        for cmd in cmds:
            print("+ " + shlex.join(cmd), flush=True)
            if not args.dry_run:
                subprocess.run(cmd, check=True)
        seconds = time.monotonic() - start
    name = f"{LOCAL_NAME}:{image_tags[0]}"
    print(f"image: {name}")
    print(f"tags: {' '.join(image_tags)}")
    if args.push:
        registry = args.push.rstrip("/")
        print(f"pushed: {' '.join(f'{registry}/{IMAGE}:{t}' for t in image_tags)}")
    if not args.dry_run:
        print(f"build_seconds: {seconds:.0f}")
        print(f"size: {image_size(tool, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
