"""A killed search keeps what it finished (``Search.run(checkpoint=...)``), and resampled
strain is filtered once for all its timeslides (``materialize``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers.search import IFOS, SAMPLE_RATE

from aframe_lib.search import find_spans, materialize, timeslide_spans
from aframe_lib.search.strain import write_mdc


def _same(a, b):
    np.testing.assert_array_equal(a.events.time, b.events.time)
    np.testing.assert_array_equal(a.events.stat, b.events.stat)
    np.testing.assert_array_equal(a.events.shift, b.events.shift)
    assert a.livetime == b.livetime


class Killed(RuntimeError):
    pass


def test_a_killed_search_resumes_where_it_stopped(engine, noise_dir, tmp_path):
    search = engine(threshold=None)
    spans = timeslide_spans(find_spans(str(noise_dir), IFOS, SAMPLE_RATE), 3.0, 1200.0)
    assert len(spans) >= 4
    clean = search.run(spans, progress=False)
    parts = tmp_path / "parts"

    outputs, calls = search.outputs, []

    def dies_on_the_third(span, progress=None):
        calls.append(span)
        if len(calls) == 3:
            raise Killed
        return outputs(span, progress)

    search.outputs = dies_on_the_third
    with pytest.raises(Killed):
        search.run(spans, progress=False, checkpoint=parts, key="model-a")
    assert sorted(p.name for p in parts.glob("span-*.npz")) == [
        "span-000000.npz",
        "span-000001.npz",
    ]

    calls.clear()
    search.outputs = lambda span, progress=None: (calls.append(span), outputs(span, progress))[1]
    resumed = search.run(spans, progress=False, checkpoint=parts, key="model-a")
    assert calls == spans[2:]  # the two saved spans are not searched again
    _same(resumed, clean)

    calls.clear()
    again = search.run(spans, progress=False, checkpoint=parts, key="model-a")
    assert calls == []
    _same(again, clean)

    # another model (key) or other settings: the saved events are not reused
    calls.clear()
    search.run(spans[:2], progress=False, checkpoint=parts, key="model-b")
    assert calls == spans[:2]
    other = engine(threshold=None, cluster_window=2.0)
    other.outputs = search.outputs
    calls.clear()
    other.run(spans[:2], progress=False, checkpoint=parts, key="model-b")
    assert calls == spans[:2]
    # another span at the same index is searched, not taken from the file
    calls.clear()
    other.run(spans[1:3], progress=False, checkpoint=parts, key="model-b")
    assert calls == spans[1:3]


def test_materialized_resampled_spans_hold_the_resampled_samples(tmp_path):
    rng = np.random.default_rng(1)
    fast = 4 * SAMPLE_RATE
    x = rng.standard_normal((2, int(40 * fast))).astype(np.float32)
    source = tmp_path / "mdc.hdf5"
    write_mdc(str(source), {ifo: [(100.0, x[j])] for j, ifo in enumerate(IFOS)}, fast)
    (view,) = find_spans(str(source), IFOS, SAMPLE_RATE)
    assert view.factor == 4

    where = tmp_path / "resampled"
    (span,) = materialize([view], str(where), chunk_length=7.0)  # chunks leave no trace
    assert span.factor == 1 and span.size == view.size and span.t0 == view.t0
    assert span.sample_rate == SAMPLE_RATE and span.ifos == view.ifos
    before = view.read()
    np.testing.assert_allclose(span.read(), before, atol=1e-6)
    (path,) = where.glob("background-*.hdf5")

    # reused while the source is unchanged; written again when it changes
    stamp = path.stat().st_mtime_ns
    materialize([view], str(where))
    assert path.stat().st_mtime_ns == stamp
    write_mdc(str(source), {ifo: [(100.0, 2 * x[j])] for j, ifo in enumerate(IFOS)}, fast)
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
    (view2,) = find_spans(str(source), IFOS, SAMPLE_RATE)
    (span2,) = materialize([view2], str(where))
    np.testing.assert_allclose(span2.read(), 2 * before, atol=2e-6)

    # a timeslide of the materialized span is the resampled data shifted (interior samples
    # equal the shifted view's; only the view's zero-padded ends differ)
    (shifted,) = timeslide_spans([span2], 2.0, 1.0)
    (shifted_view,) = timeslide_spans([view2], 2.0, 1.0)
    inner = slice(200, shifted.size - 200)
    np.testing.assert_allclose(shifted.read()[:, inner], shifted_view.read()[:, inner], atol=2e-6)

    # the file is background data at the model's rate, which comes back as it is
    (native,) = find_spans(str(where), IFOS, SAMPLE_RATE)
    assert (native.t0, native.size, native.factor) == (span.t0, span.size, 1)
    assert materialize([native], str(tmp_path / "unused")) == [native]
    assert not (tmp_path / "unused").exists()


def test_model_digest_covers_the_models_files_local_or_on_s3(oracle, tmp_path, s3_bucket):
    import hashlib
    import shutil

    from aframe_lib.search.checkpoint import model_digest
    from aframe_lib.utils import fs

    local = tmp_path / "model.pt"
    for suffix in (".pt", ".json"):
        shutil.copy(oracle.with_suffix(suffix), local.with_suffix(suffix))
    expected = hashlib.sha256(local.read_bytes() + local.with_suffix(".json").read_bytes())
    assert model_digest(local) == expected.hexdigest()

    filesystem, inner = fs.filesystem(f"{s3_bucket}/run")
    for suffix in (".pt", ".json"):
        filesystem.put_file(str(local.with_suffix(suffix)), f"{inner}/model{suffix}")
    assert model_digest(f"{s3_bucket}/run/model.pt") == expected.hexdigest()

    local.with_suffix(".json").write_text("{}")  # another model.json: another key
    assert model_digest(local) != expected.hexdigest()
