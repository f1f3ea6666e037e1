"""The Ray Train reporter runs after every ``ModelCheckpoint``, a model's own too.

(The same for a trial's reporter is run end to end in ``tune/test_trial_reporter.py``; a Ray
Train run is in ``tests/train/test_distributed.py``.)
"""

from __future__ import annotations

import pytest

pytest.importorskip("ray")


def test_the_ray_train_reporter_moves_after_a_model_checkpoint_attached_after_it(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from aframe_lib.distributed.checkpoints import _reporter_class

    cls = _reporter_class()
    reporter = cls.__new__(cls)  # its __init__ asks Ray for the run's context; setup does not
    theirs = ModelCheckpoint(monitor="valid_score")
    trainer = pl.Trainer(default_root_dir=str(tmp_path), logger=False,
                         callbacks=[reporter], enable_progress_bar=False)  # fmt: skip
    # as Lightning's _attach_model_callbacks leaves a model's configure_callbacks: its
    # ModelCheckpoint after the trainer's checkpoint callbacks, in place of the default one
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    trainer.callbacks.append(theirs)
    before = list(trainer.callbacks)
    assert before.index(reporter) < before.index(theirs)
    cls.setup(reporter, trainer, None, "fit")
    after = trainer.callbacks
    assert sorted(map(id, after)) == sorted(map(id, before))
    assert after[-2:] == [theirs, reporter]
    assert theirs.dirpath == str(tmp_path.resolve() / "checkpoints")
    cls.setup(reporter, trainer, None, "fit")  # already after it: left in place
    assert trainer.callbacks[-2:] == [theirs, reporter]
