"""Training on a Ray cluster: one job runs as a Ray Train `TorchTrainer`, the same TRL trainer inside each worker.

The workers train data-parallel (DDP: gloo on CPU, NCCL on GPU) with the job's global batch split evenly over
them, and all of them use the job's folder: worker 0 writes the log, metrics, result and adapter, every worker
reads and writes the shared checkpoints, so progress, cancel and resume work as they do locally. The registry
(and the base model folder) must therefore be on storage every node mounts; on one machine it simply is.

A cancel reaches the workers through the job folder's `cancel` file; each step the workers agree (all-reduce)
on whether any of them saw it, so all stop after the same step and write one checkpoint.
"""

import os
import socket
import threading
from typing import Any

from registry.errors import ConsoleError
from registry.settings import REPO_ROOT
from registry.storage import read_json
from training.config import JobConfig
from training.data_parallel import AgreedStop, split_batch
from training.job_folder import JobFolder, TrainingResult

# What a worker process needs to see the same registry, models and offline mode as this process.
FORWARDED_ENV = (
    "RMN_LORA_HOME",
    "RMN_LORA_MODELS",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "OMP_NUM_THREADS",
)


_connection = threading.Lock()
_connected: list[str] = []  # the address this process's Ray driver is connected to, if any


class RayBackendError(ConsoleError):
    """The Ray cluster cannot be reached or cannot run this job as configured."""


def worker_config(config: JobConfig) -> JobConfig:
    """The config each worker trains with: the global batch split evenly over the workers."""
    return split_batch(config, config.workers, RayBackendError)


def _train_loop(loop_config: dict[str, Any]) -> None:
    """What each Ray worker runs: the local training function on its share of every batch."""
    from pathlib import Path

    import ray.train

    from training.worker import run_training

    rank = ray.train.get_context().get_world_rank()
    config = JobConfig.model_validate(loop_config["config"])
    folder = JobFolder(Path(loop_config["job_dir"]), writer=rank == 0)
    run_training(config, folder.path, stop=AgreedStop(folder), resume=loop_config["resume"], writer=rank == 0)


def run_on_ray(config: JobConfig, job_dir: Any, *, stop: threading.Event, resume: bool, address: str) -> TrainingResult:
    """Run one job on the Ray cluster at `address` and return what worker 0 wrote to the job folder."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    folder = JobFolder(job_dir)
    per_worker = worker_config(config)
    folder.cancel_file.unlink(missing_ok=True)
    folder.result.unlink(missing_ok=True)
    _connect(address)
    use_gpu = config.gpus_per_worker > 0
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"config": per_worker.model_dump(mode="json"), "job_dir": str(folder.path), "resume": resume},
        scaling_config=ScalingConfig(
            num_workers=config.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": 1, **({"GPU": config.gpus_per_worker} if use_gpu else {})},
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(storage_path=str(folder.ray_storage), name="train"),
    )
    folder.log(
        f"Ray: {config.workers} worker(s) on {address}, {per_worker.batch_size} examples each per step "
        f"(global batch {config.batch_size}), {'NCCL' if use_gpu else 'gloo'}."
    )
    done = threading.Event()
    watcher = threading.Thread(target=_forward_cancel, args=(stop, done, folder), name="ray-cancel", daemon=True)
    watcher.start()
    try:
        trainer.fit()
    except Exception as error:
        cause = _root_cause(error)
        if isinstance(cause, ConsoleError):
            raise type(cause)(str(cause)) from None
        raise
    finally:
        done.set()
        watcher.join()
        folder.cancel_file.unlink(missing_ok=True)
    if not folder.result.is_file():
        raise RayBackendError("The Ray workers finished without a result; see the job log.")
    return TrainingResult.model_validate(read_json(folder.result))


def _connect(address: str) -> None:
    """Connect this process's driver to `address` (once; again after the setting names another cluster)."""
    import ray

    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    with _connection:
        if ray.is_initialized() and _connected == [address]:
            return
        if ray.is_initialized():
            ray.shutdown()
        _connected.clear()
        _check_reachable(address)
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RayBackendError(
                f"Could not connect to the Ray cluster at {address!r} ({error}). Start one with `ray start --head` "
                "or set RMN_LORA_TRAINING_BACKEND=local."
            ) from None
        _connected.append(address)


def _check_reachable(address: str) -> None:
    """Fail in seconds when nothing listens at host:port (ray.init would wait for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayBackendError(f"{address!r} is not a Ray address: use host:port, ray://host:port or auto.")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise RayBackendError(
            f"Could not connect to the Ray cluster at {address!r} ({error.strerror or error}). Start one with "
            "`ray start --head` or set RMN_LORA_TRAINING_BACKEND=local."
        ) from None


def _forward_cancel(stop: threading.Event, done: threading.Event, folder: JobFolder) -> None:
    while not done.wait(0.5):
        if stop.is_set():
            folder.cancel_file.touch()
            return


def _root_cause(error: BaseException) -> BaseException:
    """Ray wraps a worker's exception (a refused config, a missing dataset) in its own errors; find it."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        nested = error.__cause__ or getattr(error, "cause", None)
        if not isinstance(nested, BaseException):
            break
        error = nested
    return error
