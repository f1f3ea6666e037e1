"""Search spaces: dotted LightningCLI config keys mapped to Ray Tune distributions.

A space is a YAML file (or a Python module) whose keys are config keys as ``--key=value`` on the
command line of the LightningCLI takes them, and whose values are Ray Tune distributions written
as calls (YAML) or built with ``ray.tune`` (Python)::

    # search_space.yaml
    model.init_args.learning_rate: loguniform(1e-4, 1e-1)
    data.init_args.waveform_prob: uniform(0.2, 0.6)
    model.init_args.arch.init_args.layers: choice([[1, 1], [2, 2]])
    data.init_args.batch_size: 64          # a plain value is fixed for every trial

    # search_space.py: a module-level dict named ``space``
    from ray import tune
    space = {"model.init_args.learning_rate": tune.loguniform(1e-4, 1e-1)}

The YAML strings are parsed with :mod:`ast` (literal arguments only; nothing is evaluated), so a
typo or a wrong argument count is an error naming the key before any trial starts.
:func:`validate_space` then checks every key against the CLI's own parser.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aframe_lib.utils.errors import ConfigError

# the Ray Tune sampling functions a space file may name
DISTRIBUTIONS = (
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "randn",
    "qrandn",
    "randint",
    "qrandint",
    "lograndint",
    "qlograndint",
    "choice",
    "grid_search",
)


class SearchSpaceError(ConfigError, ValueError):
    """A search space that cannot be used: names the key, the value and the fix."""


def load_space(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a search space into ``{dotted key: ray.tune distribution or fixed value}``.

    Args:
        source: a ``.yaml``/``.yml``/``.json`` file, a ``.py`` file defining ``space`` (or
            ``search_space``), ``"package.module:attribute"``, or a mapping (whose string values
            are parsed like YAML ones).

    Raises:
        SearchSpaceError: for a missing file, a key that is not a dotted config key, or a
            value that is not a valid distribution.
    """
    if isinstance(source, Mapping):
        raw, origin = dict(source), "the search space"
    else:
        raw, origin = _read(str(source)), str(source)
    if not raw:
        raise SearchSpaceError(f"{origin}: the search space is empty; add at least one key")
    space = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or key.startswith("-") or " " in key:
            raise SearchSpaceError(
                f"{origin}: {key!r} is not a config key; write dotted keys without dashes, "
                "e.g. model.init_args.learning_rate"
            )
        space[key] = parse_distribution(key, value, origin)
    return space


def _read(source: str) -> dict[str, Any]:
    if ":" in source and not Path(source).exists() and not source.endswith((".py", ".yaml")):
        module, attr = source.rsplit(":", 1)
        try:
            return dict(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError) as exc:
            raise SearchSpaceError(f"cannot import the search space {source!r}: {exc}") from exc
    path = Path(source).expanduser()
    if not path.is_file():
        raise SearchSpaceError(f"search space file {source!r} does not exist")
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"_aframe_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in ("space", "search_space"):
            if isinstance(getattr(module, name, None), Mapping):
                return dict(getattr(module, name))
        raise SearchSpaceError(f"{source}: define a dict named `space` (or `search_space`)")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: expected a mapping of config keys, got {type(data)}")
    return data


def parse_distribution(key: str, value: Any, origin: str = "the search space") -> Any:
    """One value of a space: a distribution call string becomes the ``ray.tune`` object.

    Anything else (a number, a list, a Ray Tune object from a Python space) is returned as it
    is: a fixed value for every trial (or Ray's own object).
    """
    if not isinstance(value, str) or "(" not in value:
        return value
    from ray import tune

    text = value.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise SearchSpaceError(
            f"{origin}: {key}: {value!r} is not a distribution call ({exc.msg}); "
            f"write e.g. {key}: loguniform(1e-4, 1e-1)"
        ) from None
    func = node.func if isinstance(node, ast.Call) else None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        name = func.attr if func.value.id == "tune" else None  # tune.uniform(...) too
    else:
        name = func.id if isinstance(func, ast.Name) else None
    if name is None:
        raise SearchSpaceError(
            f"{origin}: {key}: {value!r} is not a distribution call; "
            f"write e.g. {key}: uniform(0.1, 0.5)"
        )
    if name not in DISTRIBUTIONS:
        raise SearchSpaceError(
            f"{origin}: {key}: unknown distribution {name!r}; use one of {', '.join(DISTRIBUTIONS)}"
        )
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise SearchSpaceError(
            f"{origin}: {key}: {value!r}: arguments must be literal numbers, strings or lists"
        ) from None
    fn = getattr(tune, name)
    try:
        inspect.signature(fn).bind(*args, **kwargs)
        dist = fn(*args, **kwargs)
        if name != "grid_search":
            _check_domain(dist, name)
    except (TypeError, ValueError, AssertionError) as exc:
        raise SearchSpaceError(
            f"{origin}: {key}: {value!r} is not a valid {name}: {exc or type(exc).__name__}; "
            f"see the signature {name}{inspect.signature(fn)}"
        ) from None
    return dist


def _check_domain(dist: Any, name: str) -> None:
    """Ray checks few arguments at construction; reject what would fail at sampling."""
    lower, upper = getattr(dist, "lower", None), getattr(dist, "upper", None)
    if lower is not None and upper is not None and not lower < upper:
        raise ValueError(f"lower ({lower}) must be below upper ({upper})")
    if name == "choice" and not getattr(dist, "categories", None):
        raise ValueError("choice needs a non-empty list of categories")
    dist.sample()


def format_value(value: Any) -> str:
    """A sampled value as the CLI's ``--key=value`` text (YAML-compatible)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return json.dumps(value)


def sample(dist: Any) -> Any:
    """One value of a space entry (a grid's first value), for validation."""
    if isinstance(dist, dict) and "grid_search" in dist:
        return dist["grid_search"][0]
    return dist.sample() if hasattr(dist, "sample") else dist


def parse_error(parse: Any, args: Sequence[str]) -> str | None:
    """Run ``parse(args)`` (a jsonargparse parse) and return its error message, or None."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parse(list(args))
    except SystemExit:
        lines = [line for line in err.getvalue().strip().splitlines() if line.strip()]
        return "\n".join(lines[-6:]) or "invalid arguments"
    except Exception as exc:  # jsonargparse with exit_on_error=False
        return str(exc)
    return None
