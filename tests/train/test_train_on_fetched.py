"""End to end on real-data plumbing: frames served by the real gwdatafind-server, fetched by
``aframe-data fetch`` (the real client), then a short ``aframe-train fit`` on what was fetched.
The model's ``model.json`` must say it trained and validated on that fetched strain."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("lalframe")
pytest.importorskip("gwdatafind_server")

from helpers.console import aframe_train  # noqa: E402
from helpers.gwdata_servers import DatafindServer, write_ffl, write_frames  # noqa: E402

from aframe_lib.data import cli  # noqa: E402
from aframe_lib.data.background import list_segments  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_000_000_000
RATE = 512.0


@pytest.mark.slow
def test_fit_on_strain_fetched_from_frames(tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    files = []
    for ifo in ("H1", "L1"):
        files += write_frames(frames, ifo, f"{ifo}:GDS-CALIB_STRAIN", "HOFT_C00",
                              [(T0, T0 + 320)], 64)  # fmt: skip
    write_ffl(frames / "frames.ffl", files)
    (tmp_path / "datafind").mkdir()
    server = DatafindServer(frames, tmp_path / "datafind")
    monkeypatch.setenv("GWDATAFIND_SERVER", server.url)
    data = tmp_path / "data"
    try:
        cli.main(["fetch", "--data_dir", str(data), "--ifos=[H1,L1]", "--sample_rate", "512",
                  "--start", str(T0), "--end", str(T0 + 320), "--max_duration", "64",
                  "--frametypes=[H1_HOFT_C00,L1_HOFT_C00]",
                  "--channels=[H1:GDS-CALIB_STRAIN,L1:GDS-CALIB_STRAIN]"])  # fmt: skip
    finally:
        server.stop()
    fetched = list_segments(str(data), ["H1", "L1"], sample_rate=RATE)
    assert [(s.t0, s.duration) for s in fetched] == [(T0 + 64 * k, 64.0) for k in range(5)]

    # the waveforms: the synthetic ones of the quickstart's generator, at the data's rate
    from aframe_lib.data.synthetic import ensure_synthetic_dataset

    aux = tmp_path / "aux"
    ensure_synthetic_dataset(str(aux), ifos=["H1", "L1"], sample_rate=RATE,
                             background_duration=128.0, segment_duration=64.0, num_waveforms=64,
                             num_val_waveforms=16, waveform_duration=4.0,
                             coalescence_time=3.0)  # fmt: skip
    for name in ("waveforms.hdf5", "val_waveforms.hdf5"):
        shutil.copy(aux / name, data / name)

    out = tmp_path / "run"
    cmd = [*aframe_train(), "fit", "--config", str(ROOT / "projects/quickstart/train.yaml"),
           f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}",
           "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
           "--trainer.enable_progress_bar=false", f"--data.init_args.data_dir={data}",
           "--data.init_args.synthetic=null", "--data.init_args.batches_per_epoch=3",
           "--data.init_args.batch_size=16", "--data.init_args.valid_livetime=200",
           "--data.init_args.valid_batch_size=32"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (info,) = [json.loads(p.read_text()) for p in out.rglob("model.json")]
    # 5 files: the latest (20 %) is the test split, the one before validation, 3 train
    (train,), (valid,) = info["provenance"]["train"], info["provenance"]["valid"]
    assert (train["kind"], train["source"], valid["source"]) == ("fetched", "frames", "frames")
    assert train["frametypes"] == {"H1": "H1_HOFT_C00", "L1": "L1_HOFT_C00"}
    assert train["spans"]["H1"] == [[T0, T0 + 192]]
    assert valid["spans"]["L1"] == [[T0 + 192, T0 + 256]]
