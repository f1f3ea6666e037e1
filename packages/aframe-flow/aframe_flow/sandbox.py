"""Where a task's command runs: on the host, or inside an Apptainer image.

:class:`Sandbox` turns a command (``["aframe-train", "fit", ...]``) and the task's settings
(image, GPUs, directories, ``--dev``) into the exact command line and environment to execute:

    apptainer exec --cleanenv [--nv] --bind DIR ... [--bind TREE:/opt/aframe/src:ro] IMAGE CMD...

- ``--nv`` is added iff GPUs are asked for; ``CUDA_VISIBLE_DEVICES`` is set to them.
- ``--cleanenv`` keeps the host environment out; what the command needs is passed explicitly
  as ``APPTAINERENV_<NAME>`` variables: ``CUDA_VISIBLE_DEVICES``, the task's own variables, and
  the host's ``AFRAME_*``, ``AWS_*`` and ``WANDB_*`` variables (credentials stay in the
  environment: they never appear on the command line).
- ``--dev`` binds the working tree at ``/opt/aframe/src`` (read-only) and puts its packages first
  on ``PYTHONPATH``, so the image runs the code being edited instead of its released packages.

Without an image the command runs on the host with the same variables (and
``CUDA_VISIBLE_DEVICES``) added to the environment.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .parameters import ParameterError

DEV_MOUNT = "/opt/aframe/src"
PACKAGES = ("aframe-lib", "aframe-train", "aframe-flow")
FORWARDED_PREFIXES = ("AFRAME_", "AWS_", "WANDB_")


def repo_root() -> Path | None:
    """The working tree holding ``packages/aframe-*``.

    ``$AFRAME_REPO``, else the working directory or one of its parents (where a user runs
    ``law run ... --dev`` from), else the checkout this module was installed from (editable).
    """
    cwd = Path.cwd().resolve()
    candidates = [
        os.environ.get("AFRAME_REPO"),
        cwd,
        *cwd.parents,
        Path(__file__).resolve().parents[3],
    ]
    for c in candidates:
        if c and all((Path(c) / "packages" / p).is_dir() for p in PACKAGES):
            return Path(c).resolve()
    return None


def local_executable(name: str) -> str:
    """A console script (``aframe-train``, ``aframe-data``) beside this interpreter, else the
    one on ``PATH``, else ``name`` itself (running it then fails with the shell's message)."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(script):
        return script
    return shutil.which(name) or name


def resolve_image(image: str, container_root: str = "", flag: str = "--image") -> Path:
    """The ``.sif`` file of ``image``: a path, or a bare name looked up in ``container_root``.

    ``flag`` is the parameter that gave it (``--image``, ``--data-image``), for the message.

    Raises:
        ParameterError: when the file does not exist, naming where it was looked for.
    """
    path = Path(image).expanduser()
    if not path.is_absolute() and container_root and not path.exists():
        path = Path(container_root).expanduser() / path
    if not path.is_file():
        where = f" (AFRAME_CONTAINER_ROOT={container_root})" if container_root else ""
        raise ParameterError(
            f"{flag}={image}: no such Apptainer image {str(path)!r}{where}; build it with "
            "`apptainer build train.sif projects/quickstart/apptainer.def` (see its header) or "
            "give the path of an existing .sif"
        )
    return path.resolve()


@dataclass
class Sandbox:
    """The command line and environment of one command, on the host or in an image.

    Args:
        image: ``.sif`` path; ``None`` runs on the host.
        gpus: GPU indices made visible (``CUDA_VISIBLE_DEVICES``); empty: no GPU.
        binds: host directories (or files) bound at the same path inside the image.
        env: variables set for the command (inside the image: as ``APPTAINERENV_*``).
        dev: bind the working tree over the image's released packages.
        executable: ``apptainer`` (or ``singularity``).
    """

    image: str | os.PathLike | None = None
    gpus: Sequence[int] = ()
    binds: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    dev: bool = False
    executable: str = "apptainer"

    def variables(self, host: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables the command sees, beyond what the image (or the host) defines."""
        host = os.environ if host is None else host
        out = {k: v for k, v in host.items() if k.startswith(FORWARDED_PREFIXES)}
        out.update(self.env)
        if self.gpus:
            out["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self.gpus)
        if self.dev and self.image is not None:
            paths = [f"{DEV_MOUNT}/packages/{p}" for p in PACKAGES]
            out["PYTHONPATH"] = os.pathsep.join(paths)
        return out

    def bind_list(self) -> list[str]:
        """``--bind`` values: each existing local directory once, parents before children."""
        seen: list[str] = []
        for b in self.binds:
            if not b or "://" in str(b):
                continue
            p = str(Path(b).expanduser().resolve())
            if p not in seen:
                seen.append(p)
        binds = [f"{p}:{p}" for p in sorted(seen)]
        if self.dev:
            root = repo_root()
            if root is None:
                raise ParameterError(
                    "--dev: cannot find the aframe working tree (packages/aframe-lib, ...); "
                    "install the packages editable from a clone or set AFRAME_REPO to the clone"
                )
            binds.append(f"{root}:{DEV_MOUNT}:ro")
        return binds

    def command(self, argv: Sequence[str]) -> list[str]:
        """The full command line."""
        argv = [str(a) for a in argv]
        if self.image is None:
            return argv
        cmd = [self.executable, "exec", "--cleanenv"]
        if self.gpus:
            cmd.append("--nv")
        for b in self.bind_list():
            cmd += ["--bind", b]
        return [*cmd, str(self.image), *argv]

    def environment(self, host: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of the process to start (the host's plus the variables above)."""
        host = dict(os.environ if host is None else host)
        variables = self.variables(host)
        if self.image is None:
            return {**host, **variables}
        return {**host, **{f"APPTAINERENV_{k}": v for k, v in variables.items()}}

    def run(self, argv: Sequence[str], cwd: str | None = None) -> None:
        """Run the command and wait; a non-zero exit raises :class:`CommandError`.

        Its stderr is echoed as it comes and its tail kept, so the failure carries the
        command's own error block (see :mod:`aframe_lib.utils.errors`), not a wall of text.
        """
        cmd = self.command(argv)
        if self.image is not None and shutil.which(self.executable) is None:
            raise RuntimeError(
                f"{self.executable} is not installed here: run with an image only where "
                "Apptainer exists, or drop --image to run on the host"
            )
        run_command(cmd, env=self.environment(), cwd=cwd, argv=argv)


# the first line of a console script's error block (aframe_lib.utils.errors.format_error)
_BLOCK_START = re.compile(r"^(aframe[\w.-]*(?: [\w-]+)?|law): error: ")


def find_error_block(text: str) -> str | None:
    """The last error block in a child process's output, or ``None``.

    The reader of the block format the console scripts write
    (:func:`aframe_lib.utils.errors.format_error`: one line ``PROG: error: ...``,
    then lines indented by two spaces): the child may run in an image, so this side needs
    nothing of aframe-lib.
    """
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if _BLOCK_START.match(lines[start]):
            end = start + 1
            while end < len(lines) and lines[end].startswith("  "):
                end += 1
            return "\n".join(lines[start:end])
    return None


class CommandError(subprocess.CalledProcessError):
    """A task's command failed; the message is the command's own error block.

    Also a ``CalledProcessError`` (``returncode``, ``cmd``, ``stderr`` = the output's tail).
    """

    def __init__(self, returncode: int, cmd: Sequence[str], tail: str, argv: Sequence[str]):
        subprocess.CalledProcessError.__init__(self, returncode, list(cmd), stderr=tail)
        self.exit_code = returncode if returncode > 0 else 1
        name = " ".join(str(a) for a in list(argv)[:2])
        block = find_error_block(tail)
        if block is None:  # no message of ours (a bug, or a kill): the output's last lines
            lines = tail.rstrip().splitlines()[-15:]
            block = "\n".join(f"  {line}" for line in lines) if lines else "  (no output)"
        how = f"was killed by signal {-returncode}" if returncode < 0 else (
            f"exited with status {returncode}")  # fmt: skip
        self.message = f"`{name}` {how}:\n{block}"

    def __str__(self) -> str:
        return self.message


def run_command(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    argv: Sequence[str] | None = None,
    on_stdout: Callable[[str], None] | None = None,
    keep: int = 200,
) -> None:
    """Run ``cmd``, echo its stderr (and stdout) live, raise :class:`CommandError` on failure.

    Args:
        cmd: the full command line.
        env, cwd: its environment and working directory.
        argv: the command as the user would type it (for the message); ``cmd`` by default.
        on_stdout: called with each stdout line (after echoing it); stdout is inherited when
            not given.
        keep: lines of stderr kept for the error message.
    """
    tail: collections.deque[str] = collections.deque(maxlen=keep)

    def pump(stream, sink, hook=None) -> None:
        for line in stream:
            sink.write(line)
            sink.flush()
            if hook is not None:
                hook(line)

    stdout = subprocess.PIPE if on_stdout is not None else None
    with subprocess.Popen(
        list(cmd), env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True,
        errors="replace", bufsize=1,
    ) as proc:  # fmt: skip
        reader = threading.Thread(target=pump, args=(proc.stderr, sys.stderr, tail.append))
        reader.start()
        if on_stdout is not None:
            pump(proc.stdout, sys.stdout, on_stdout)
        reader.join()
    if proc.returncode:
        raise CommandError(proc.returncode, cmd, "".join(tail), argv or cmd)
