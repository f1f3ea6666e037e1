"""aframe_lib.utils.errors (the atomic writers' clean-up of killed writes: test_fs.py)."""

from __future__ import annotations

import json

import pytest

from aframe_lib.data.background import BackgroundError
from aframe_lib.data.config import DataConfigError
from aframe_lib.utils.errors import (
    AframeError,
    InputError,
    ModelFileError,
    StorageError,
    check_yaml_files,
    classify_storage_error,
    explain_model_file,
    user_error,
)


def test_project_errors_join_one_hierarchy_and_stay_value_errors():
    from aframe_lib.search.strain import StrainError
    from aframe_lib.tune import SearchSpaceError

    for cls in (DataConfigError, BackgroundError, StrainError, SearchSpaceError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError), cls
    assert issubclass(StorageError, ConnectionError) and StorageError.exit_code == 2
    assert AframeError.exit_code == 1


def test_wrapped_error_is_found_through_its_causes():
    """jsonargparse raises a ValueError ``from`` the Dataset's DataConfigError."""
    inner = DataConfigError("data.batch_size=0: must be a positive integer")
    try:
        try:
            raise inner
        except DataConfigError as exc:
            raise ValueError("Does not validate against any of the Union subtypes") from exc
    except ValueError as outer:
        assert user_error(outer) is inner
    assert user_error(KeyError("bug")) is None


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("a: 1\n")
    bad.write_text("a: [1,\nb: 2\n")
    check_yaml_files(["fit", "--config", str(good)])
    with pytest.raises(InputError, match=rf"{bad} \(line \d+, column \d+\): not valid YAML"):
        check_yaml_files(["fit", "--config", str(good), f"--config={bad}"])


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("EndpointConnectionError", "endpoint"),
        ("NoCredentialsError", "credentials"),
        ("NoSuchBucket", "bucket"),
    ],
)
def test_storage_errors_are_classified_by_what_is_wrong(name, kind):
    exc = type(name, (Exception,), {})("boom")
    assert classify_storage_error(exc) == kind
    assert classify_storage_error(FileNotFoundError("s3://b/k")) == "key"
    assert classify_storage_error(PermissionError("denied")) == "credentials"
    assert classify_storage_error(KeyError("x")) is None


def test_corrupt_model_and_metadata_name_the_file(tmp_path):
    import torch

    from aframe_lib.export import load_exported

    torch.jit.script(torch.nn.Linear(2, 1)).save(str(tmp_path / "model.pt"))
    (tmp_path / "model.json").write_text('{"data": ')
    with pytest.raises(ModelFileError, match=rf"{tmp_path}/model.json: not valid JSON"):
        load_exported(tmp_path / "model.pt")
    (tmp_path / "model.json").write_text(json.dumps({"data": {}}))
    (tmp_path / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:100])
    with pytest.raises(ModelFileError, match=rf"{tmp_path}/model.pt: cannot be read .*truncated"):
        load_exported(tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="no such file"), explain_model_file("x/model.pt"):
        open(tmp_path / "missing.pt", "rb")
