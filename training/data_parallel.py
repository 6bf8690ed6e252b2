"""Local data-parallel training: one job as several single-thread processes on this machine (DDP over gloo).

On a shared 2-core CPU one process of two threads stalls at every OpenMP barrier whenever another program holds a
core; two single-thread processes meet once per step, at the gradient all-reduce (bench/training_throughput.py
--ab processes measured 1.09-1.86x the tokens/s with the 135M model). `JobConfig.processes` says when to split.

`run_local` trains a job in the local backend. With one process it calls `run_training` in the calling thread, as
before. With more, `torch.multiprocessing` spawns the ranks (each one thread, its share of every global batch, the
usual `run_training` into the same job folder; rank 0 writes the log, metrics, result and adapter, as the Ray
backend's worker 0 does) and the calling thread waits for them:
- cancel: the job's stop event makes the waiting thread write the folder's `cancel` file; the ranks agree each step
  (`AgreedStop`, an all-reduce) so all stop after the same step and save one checkpoint, which resume continues;
- a rank that fails stops the others (torch's process context terminates them) and fails the job with its error;
- a console that stops takes its ranks with it: they are daemonic (terminated at its exit) and, on Linux, die with it
  even when it is killed (PR_SET_PDEATHSIG), so no orphan keeps training; the next console marks the job interrupted;
- the ranks run below the console's CPU priority (`training.priority`), so its pages stay quick while they train.
"""

import os
import socket
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.errors import ConsoleError
from registry.storage import read_json
from training.config import JobConfig
from training.errors import TrainingRefused
from training.job_folder import JobFolder, TrainingResult
from training.priority import lower_this_process

PR_SET_PDEATHSIG = 1


class AgreedStop:
    """`is_set()` for a rank: true on every rank as soon as any of them sees the job's cancel file."""

    def __init__(self, folder: JobFolder):
        self.folder = folder

    def is_set(self) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if self.folder.cancel_file.exists() else 0])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def summed_over_ranks(*values: float) -> list[float]:
    """The values summed over the job's processes (as they are, in one process): a rate of the whole job."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.tolist()


def world_size() -> int:
    """How many processes train this job (1 outside a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def split_batch(config: JobConfig, parts: int, error: type[ConsoleError] = TrainingRefused) -> JobConfig:
    """The config each of `parts` processes trains with: the global batch split evenly over them."""
    if config.batch_size % parts:
        raise error(
            f"Batch size {config.batch_size} does not split evenly over {parts} workers: choose a multiple of the "
            "number of workers (it is the global batch)."
        )
    return config.model_copy(update={"batch_size": config.batch_size // parts})


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's CPU set), not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def run_local(config: JobConfig, job_dir: Path, *, stop: threading.Event, resume: bool) -> TrainingResult:
    """Train one job on this machine in as many processes as `JobConfig.processes` says; the job log says which."""
    from training.worker import preflight, run_training

    checks = preflight(config)
    processes, why = config.processes(
        device=checks.device,
        cores=usable_cores(),
        parameters=checks.base.parameters,
        examples=config.planned_examples(checks.train.rows),
    )
    folder = JobFolder(job_dir)
    folder.log(why + ".")
    if processes == 1:
        return run_training(config, job_dir, stop=stop, resume=resume)
    return _run_ranks(config, folder, processes, stop=stop, resume=resume)


def _run_ranks(
    config: JobConfig, folder: JobFolder, processes: int, *, stop: threading.Event, resume: bool
) -> TrainingResult:
    import torch.multiprocessing as mp

    per_rank = split_batch(config, processes)
    folder.cancel_file.unlink(missing_ok=True)
    folder.result.unlink(missing_ok=True)
    errors = mp.get_context("spawn").SimpleQueue()
    folder.log(
        f"Data parallel: {processes} processes of 1 thread, {per_rank.batch_size} examples each per step (global "
        f"batch {config.batch_size}), gloo on loopback."
    )
    with _main_script_hidden():
        context = mp.start_processes(
            _rank_main,
            args=(
                processes,
                _free_port(),
                os.getpid(),
                per_rank.model_dump(mode="json"),
                str(folder.path),
                resume,
                errors,
            ),
            nprocs=processes,
            join=False,
            daemon=True,  # a console that exits ends them (multiprocessing would otherwise wait for them at exit)
            start_method="spawn",
        )
    try:
        while not context.join(timeout=0.5):
            if stop.is_set() and not folder.cancel_file.exists():
                folder.cancel_file.touch()
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        if not errors.empty():
            raise errors.get() from None
        raise RuntimeError(f"A training process failed: {str(error).strip().splitlines()[-1]}") from None
    finally:
        for process in context.processes:  # the waiting thread itself failed: never leave a rank behind
            if process.is_alive():
                process.kill()
                process.join()
        folder.cancel_file.unlink(missing_ok=True)
        errors.close()
    if not folder.result.is_file():
        raise RuntimeError("The training processes finished without a result; see the job log.")
    return TrainingResult.model_validate(read_json(folder.result))


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start ranks that run `_rank_main` alone. Spawn runs the parent's main script again in every child, as
    `__mp_main__`; under Streamlit that is app.py: the console's start-up code (settings, the registry's scratch
    clean-up) without a session, in each rank. Only what the ranks are started with is affected: a Streamlit run
    that replaces `__main__` meanwhile keeps its module."""
    main = sys.modules["__main__"]
    stand_in = sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if sys.modules.get("__main__") is stand_in:
            sys.modules["__main__"] = main


def _rank_main(
    rank: int, world: int, port: int, parent: int, config: dict[str, Any], job_dir: str, resume: bool, errors: Any
) -> None:
    """One rank (a spawned process): one thread, the process group from the environment, the usual worker."""
    import torch
    import torch.distributed as dist

    _die_with(parent)
    nice = lower_this_process()  # before torch starts its threads (gloo's, OpenMP's), which inherit it
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from training.worker import run_training

    folder = JobFolder(Path(job_dir), writer=rank == 0)
    if rank == 0:
        folder.log(f"Training processes run at nice {nice}, below the console, so its pages keep the CPU they need.")
    try:
        run_training(
            JobConfig.model_validate(config), folder.path, stop=AgreedStop(folder), resume=resume, writer=rank == 0
        )
    except ConsoleError as error:  # the job fails with the same message (and type) as in one process
        errors.put(error)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _die_with(parent: int) -> None:
    """End this process when the console that spawned it dies (even by SIGKILL), so no rank outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
