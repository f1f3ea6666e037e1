"""Training, validation and test splits of background files: whole files, disjoint in time.

Validation picks the checkpoint (it drives ``ModelCheckpoint`` and early stopping), so a score on
the validation files is optimistic. The test split is held out from both: ``aframe-train test``
scores it. Splits are by whole files and by time, the latest data held out::

    earliest ............................................................ latest
    | training files                     | validation files | test files    |

or the test files come from a directory of their own (``data.test_dir``), which must not
overlap the training or validation data in time.
"""

from __future__ import annotations

from collections.abc import Sequence

from .background import BackgroundError, BackgroundSegment

_TOL = 1e-9


def _take_latest(
    segs: list[BackgroundSegment], want: float, keep: int, field: str, value: float
) -> int:
    """How many of the latest files of ``segs`` (sorted by t0) hold ``want`` s, leaving ``keep``."""
    n, held = 1, segs[-1].duration
    while held < want * (1 - _TOL) and n < len(segs) - keep:
        n += 1
        held += segs[-n].duration
    if held < want * (1 - _TOL):
        total = sum(s.duration for s in segs)
        raise BackgroundError(
            f"data.{field}={value}: needs {want:g} s of the latest background files, but "
            f"{len(segs)} file(s) ({total:g} s) leave only {held:g} s once {keep} file(s) are "
            f"kept for the other split(s); lower data.{field} or add background files"
        )
    return n


def split_segments(
    segments: Sequence[BackgroundSegment], valid_frac: float, test_frac: float = 0.0
) -> tuple[list[BackgroundSegment], list[BackgroundSegment], list[BackgroundSegment]]:
    """Split files into training, validation and test, the latest ones held out.

    The test split takes the latest files until they hold ``test_frac`` of the total duration
    (none when ``test_frac`` is 0), validation the latest remaining files until they hold
    ``valid_frac`` of the total, and training the rest; each non-empty split keeps whole files.

    Args:
        segments: Every background file (any order).
        valid_frac: Fraction of the total duration for validation, in (0, 1).
        test_frac: Fraction of the total duration for the test split, in [0, 1).

    Returns:
        ``(train, valid, test)``, each sorted by ``t0``; ``train`` and ``valid`` hold at least
        one file, ``test`` is empty when ``test_frac`` is 0.

    Raises:
        BackgroundError: when the files cannot meet the request (naming the field and the fix).
    """
    segs = sorted(segments, key=lambda s: s.t0)
    need = 3 if test_frac > 0 else 2
    if len(segs) < need:
        where = segs[0].path if segs else "no files"
        raise BackgroundError(
            f"{where}: {len(segs)} background file(s), but training, validation"
            f"{' and test' if test_frac > 0 else ''} each need whole files; add background "
            "files (the held-out splits take the latest ones)"
        )
    total = sum(s.duration for s in segs)
    test: list[BackgroundSegment] = []
    if test_frac > 0:
        n = _take_latest(segs, test_frac * total, 2, "test_frac", test_frac)
        segs, test = segs[:-n], segs[-n:]
    n = _take_latest(segs, valid_frac * total, 1, "valid_frac", valid_frac)
    return segs[:-n], segs[-n:], test


def check_disjoint(
    held_out: Sequence[BackgroundSegment], others: Sequence[BackgroundSegment], what: str
) -> None:
    """Raise when a held-out file shares a path or any stretch of time with another split.

    Args:
        held_out: The files of the held-out split (e.g. those of ``data.test_dir``).
        others: The files of the other splits.
        what: The held-out split's name in the error, e.g. ``"data.test_dir"``.
    """
    for a in held_out:
        for b in others:
            overlap = min(a.t0 + a.duration, b.t0 + b.duration) - max(a.t0, b.t0)
            if a.path == b.path or overlap > 0:
                raise BackgroundError(
                    f"{what}: {a.path} (GPS {a.t0:g} + {a.duration:g} s) overlaps {b.path} "
                    f"(GPS {b.t0:g} + {b.duration:g} s) of the training/validation data; a "
                    "held-out test set must share no data with them: remove one of the files"
                )
