"""One LightningCLI ``fit`` trained data-parallel over N Ray workers (Ray Train; ``[tune]`` extra).

    from aframe_lib.distributed import DistributedConfig, run_fit
    run_fit("aframe_train.cli.AframeCLI", ["--config", "train.yaml"],
            DistributedConfig(num_workers=4, gpus_per_worker=1, address="ray://head:10001"))

The config is the one a one-node ``fit`` takes; Ray Train's Lightning integration
(``TorchTrainer``, ``RayDDPStrategy``, ``RayLightningEnvironment``, ``RayTrainReportCallback``,
``prepare_trainer``) runs it on the workers. Modules: :mod:`.trainer` (settings, checks, the
driver, the per-worker loop). Ray is imported only when a run starts.

The engine is not tied to the command line: a Ray Tune trial can train multi-worker through the
same code, ``make_trainer(worker_setup(cli, config_yaml, settings, run_dir), settings,
storage_path, storage_fs).fit()`` inside its function trainable (one path, not two).
"""

from .trainer import ClusterError, DistributedConfig, run_fit, train_loop

__all__ = ["ClusterError", "DistributedConfig", "run_fit", "train_loop"]
