"""``law run`` of a task with bad input: the one message, once, no luigi or law traceback, a
non-zero exit status; and ``law run aframe_flow.X --help`` documents every parameter."""

from __future__ import annotations

import contextlib
import io
import os
import sys

import luigi
import pytest
from helpers.flow import law_env_for, law_run

import aframe_flow


def test_a_bad_parameter_is_one_line_without_traceback(tmp_path):
    env = law_env_for(tmp_path)
    proc = law_run(env, "aframe_flow.Pipeline", "--ifos", "H1,X1", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("--ifos=H1,X1: unknown or repeated interferometer") == 1, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3, out


def test_aframe_debug_keeps_the_traceback(tmp_path):
    env = {**law_env_for(tmp_path), "AFRAME_DEBUG": "1"}
    proc = law_run(env, "aframe_flow.Pipeline", "--ifos", "H1,X1", timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stdout + proc.stderr


def test_a_failed_command_shows_its_message_once_without_traceback(tmp_path):
    """A task whose command (``aframe-train evaluate``) fails on bad input: the command's own
    error block, echoed live, once; the failure line names the command and its status."""
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a TorchScript archive")
    env = law_env_for(tmp_path)
    proc = law_run(env, "aframe_flow.Evaluate", "--model", str(model), "--eval-data",
                   "synthetic", "--report-dir", str(tmp_path / "report"), timeout=300)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("cannot be read as a TorchScript model") == 1, out[-4000:]
    assert "exited with status 2 (its error is above)" in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]


TASKS = [n for n in aframe_flow.__all__
         if isinstance(getattr(aframe_flow, n), type)
         and issubclass(getattr(aframe_flow, n), luigi.Task)]  # fmt: skip


def law_help(task: type) -> str:
    """``law run aframe_flow.<Task> --help``: luigi's command-line parser, in this process."""
    from luigi.cmdline_parser import CmdlineParser

    out = io.StringIO()
    argv0, sys.argv[0] = sys.argv[0], "law run"
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            CmdlineParser([task.get_task_family(), "--help"])
    finally:
        sys.argv[0] = argv0
    return out.getvalue()


@pytest.mark.parametrize("name", TASKS)
def test_law_help_documents_every_parameter(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # descriptions unwrapped
    task = getattr(aframe_flow, name)
    text = law_help(task)
    for param_name, param in task.get_params():
        description = (param.description or "").strip()
        assert description, f"{name}.{param_name} has no description"
        flag = "--" + param_name.replace("_", "-")
        assert flag + " " in text, f"law run aframe_flow.{name} --help lacks {flag}"
        # the option's entry: its line and the indented lines after it, up to the next option
        entry = text.split("\n  " + flag + " ", 1)[1].split("\n  -", 1)[0]
        assert " ".join(description.split()[:3]) in " ".join(entry.split()), (flag, entry)


def test_the_filter_leaves_other_exceptions_their_traceback():
    """A bug (any exception that is not one of our described errors) keeps its traceback."""
    import logging

    from aframe_flow.reporting import UserErrorFilter

    try:
        raise KeyError("a bug")
    except KeyError:
        record = logging.LogRecord("luigi-interface", logging.ERROR, __file__, 1, "failed %s",
                                   ("T",), sys.exc_info())  # fmt: skip
    assert UserErrorFilter().filter(record) and record.exc_info is not None
    assert os.environ.get("AFRAME_DEBUG") in (None, "", "0")


def test_a_parameter_error_in_complete_is_its_headline_and_message(caplog):
    """luigi logs an error in complete() with the traceback as text: ours keep the message only;
    another exception's traceback is left as it is."""
    import traceback

    from luigi.worker import Worker

    from aframe_flow.parameters import ParameterError

    def logged(exc: Exception) -> str:
        try:
            raise exc
        except Exception:
            tb = traceback.format_exc()
        caplog.clear()
        with caplog.at_level("WARNING", logger="luigi-interface"):
            Worker._log_complete_error(None, "Train(seed=7)", tb)  # luigi's own record
        (record,) = caplog.records
        return record.getMessage()

    ours = logged(ParameterError("--run-dir=/x: holds the outputs of other parameters"))
    assert ours == (
        "Will not run Train(seed=7) or any dependencies due to error in complete() method:\n"
        "  --run-dir=/x: holds the outputs of other parameters"
    )
    bug = logged(KeyError("a bug"))
    assert "Traceback" in bug and "KeyError" in bug
