"""`import aframe_flow` is light: no torch, no aframe-train (flow reaches train via its CLI)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_aframe_flow_loads_no_torch_nor_aframe_train():
    code = (
        "import json, sys, aframe_flow, aframe_flow.clusters; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = {"torch", "aframe_train", "lightning", "ml4gw", "h5py", "gwpy", "ray", "kr8s"}
    assert not loaded & heavy, f"imported eagerly: {sorted(loaded & heavy)}"
    assert {"law", "luigi"} <= loaded


def test_every_task_parameter_is_described():
    import luigi

    import aframe_flow

    missing = []
    for name in aframe_flow.__all__:
        cls = getattr(aframe_flow, name)
        if not isinstance(cls, type) or not issubclass(cls, luigi.Task):
            continue
        for pname, param in cls.get_params():
            if pname in ("wrap_once",):  # law's own
                continue
            if not param.description:
                missing.append(f"{name}.{pname}")
    assert not missing, missing
