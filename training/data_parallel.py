"""Local data-parallel training: one job as several single-thread processes on this machine (DDP over gloo).

On a shared 2-core CPU one process of two threads stalls at every OpenMP barrier whenever another program holds a
core; two single-thread processes meet once per step, at the gradient all-reduce (bench/training_throughput.py
--ab processes measured 1.09-1.86x the tokens/s with the 135M model). `JobConfig.processes` says when to split.

`run_local` trains every job of the local backend in processes of its own, never in the console's: one process with
every core's threads, or, when the rule splits the job, that many single-thread ranks (each its share of every global
batch, the usual `run_training` into the same job folder; rank 0 writes the log, metrics, result and adapter, as the
Ray backend's worker 0 does). The calling thread waits for them. So the console keeps its GIL and its CPU priority
while a job trains, and a job that crashes or runs out of memory does not take the console down:
- the processes are forked from a process server that imported the training stack once (`start_process_server`,
  started by the console's warm-up), so a job does not import it again;
- cancel: the job's stop event makes the waiting thread write the folder's `cancel` file; the ranks agree each step
  (`AgreedStop`, an all-reduce) so all stop after the same step and save one checkpoint, which resume continues;
- a process that fails stops the others (torch's process context terminates them) and fails the job with its error;
- a console that stops takes its processes with it: they are daemonic (terminated at its exit) and each ends itself
  when the console is gone, even killed (`_die_with_the_console`), so no orphan keeps training; the next console marks
  the job interrupted;
- they run below the console's CPU priority (`training.priority`), so its pages stay quick while they train.
"""

import os
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from registry.errors import ConsoleError
from registry.storage import read_json
from training.config import JobConfig
from training.errors import TrainingRefused
from training.job_folder import JobFolder, TrainingResult
from training.priority import lower_this_process, lower_this_thread

START_METHOD = "forkserver"
# What a job imports before its first step: the training stack (training.worker), then what `build_trainer` and
# `load_base` import on first use (the trainers, PEFT's helpers, our patches: a quarter of the stack's import time).
PRELOADED = [
    "training.worker",
    "trl.trainer.sft_trainer",
    "trl.trainer.dpo_trainer",
    "trl.trainer.kto_trainer",
    "peft.optimizers",
    "training.attention",
    "training.evaluation",
    "training.lm_head",
    "training.lora_dropout",
    "training.lora_forward",
]


class TrainingKilled(ConsoleError):
    """A training process was killed from outside (the out-of-memory killer, a user): the job fails and says so."""


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
    from training.worker import preflight

    checks = preflight(config)
    processes, why = config.processes(
        device=checks.device,
        cores=usable_cores(),
        parameters=checks.base.parameters,
        examples=config.planned_examples(checks.train.rows),
    )
    folder = JobFolder(job_dir)
    folder.log(why + ".")
    return _run_processes(config, folder, processes, stop=stop, resume=resume)


def start_process_server() -> None:
    """Start the server the training processes are forked from, with the training stack imported in it (once per
    console, seconds of CPU), below this console's priority: a job then starts training without importing the stack
    again. `run_local` starts it itself when no warm-up did."""
    import multiprocessing
    from multiprocessing import forkserver

    context = multiprocessing.get_context(START_METHOD)
    context.set_forkserver_preload(PRELOADED)

    def start() -> None:
        lower_this_thread()  # the server, and the processes it forks, inherit this thread's priority
        with _main_script_hidden():
            forkserver.ensure_running()

    thread = threading.Thread(target=start, name="training-process-server", daemon=True)
    thread.start()
    thread.join()


def _run_processes(
    config: JobConfig, folder: JobFolder, processes: int, *, stop: threading.Event, resume: bool
) -> TrainingResult:
    import torch.multiprocessing as mp

    per_rank = split_batch(config, processes)
    threads = 1 if processes > 1 else training_threads()
    folder.cancel_file.unlink(missing_ok=True)
    folder.result.unlink(missing_ok=True)
    start_process_server()
    errors = mp.get_context(START_METHOD).SimpleQueue()
    if processes > 1:
        folder.log(
            f"Data parallel: {processes} processes of 1 thread, {per_rank.batch_size} examples each per step (global "
            f"batch {config.batch_size}), gloo on loopback."
        )
    with _main_script_hidden():
        context = mp.start_processes(
            _rank_main,
            args=(
                processes,
                threads,
                _free_port(),
                os.getpid(),
                os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                dict(os.environ),
                per_rank.model_dump(mode="json"),
                str(folder.path),
                resume,
                errors,
            ),
            nprocs=processes,
            join=False,
            daemon=True,  # a console that exits ends them (multiprocessing would otherwise wait for them at exit)
            start_method=START_METHOD,
        )
    try:
        while not context.join(timeout=0.5):
            if stop.is_set() and not folder.cancel_file.exists():
                folder.cancel_file.touch()
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        if not errors.empty():
            raise errors.get() from None
        what = "The training process" if processes == 1 else "A training process"
        if getattr(error, "signal_name", None) == "SIGKILL":
            raise TrainingKilled(
                f"{what} was killed (SIGKILL), most often by the system when memory ran out: resume the job from its "
                "last checkpoint, with a smaller batch or max sequence length if it happens again."
            ) from None
        raise RuntimeError(f"{what} failed: {str(error).strip().splitlines()[-1]}") from None
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


def training_threads() -> int:
    """The threads a job trained in one process uses: OMP_NUM_THREADS when set (as torch itself reads it), else one
    per usable core."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or usable_cores()


_STARTING = threading.Lock()


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start processes that run `_rank_main` alone. Multiprocessing runs the parent's main script again in the
    process server and in every child, as `__mp_main__`; under Streamlit that is app.py: the console's start-up
    code (settings, the registry's scratch clean-up) without a session, in each process. Hiding `__main__` while the
    processes start was not enough: a session's script run puts app.py back as `__main__` at any moment (a browser
    test's rank 1 ran app.py and died), so the preparation data they are started with leaves the main script out."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def without_main_script(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _STARTING:
        spawn.get_preparation_data = without_main_script
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def _rank_main(
    rank: int,
    world: int,
    threads: int,
    port: int,
    console: int,
    console_nice: int,
    environment: dict[str, str],
    config: dict[str, Any],
    job_dir: str,
    resume: bool,
    errors: Any,
) -> None:
    """One training process, forked from the process server: the console's environment as the job started (the
    server keeps the one it started with), below the console's priority, the usual worker (a process group when
    there are several)."""
    nice = lower_this_process(console_nice)  # before torch starts its threads (gloo's, OpenMP's), which inherit it
    _die_with_the_console(console)
    os.environ.clear()
    os.environ.update(environment)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    if world > 1:
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
    if world == 1:
        folder.log(
            f"Training in process {os.getpid()} ({threads} threads) at nice {nice}, below the console, so its pages "
            "keep the CPU they need."
        )
    elif rank == 0:
        folder.log(f"Training processes run at nice {nice}, below the console, so its pages keep the CPU they need.")
    try:
        run_training(
            JobConfig.model_validate(config), folder.path, stop=AgreedStop(folder), resume=resume, writer=rank == 0
        )
    except ConsoleError as error:  # the job fails with the same message (and type) as in one process
        errors.put(error)
        raise
    except Exception as error:
        folder.log(traceback.format_exc())
        if rank == 0:
            errors.put(_portable(error))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _portable(error: Exception) -> Exception:
    """The error as the console receives it: itself when it pickles, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 — any error that does not survive the trip is named instead
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _die_with_the_console(console: int) -> None:
    """End this process as soon as the console that started it ends, even by SIGKILL, so no training outlives it: a
    thread waits for the console's exit (a pidfd on Linux, else a check every second). The process server cannot do
    it: it lives as long as any process it forked."""
    import select

    try:
        exited = os.pidfd_open(console)
    except ProcessLookupError:  # it ended before this process started
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here (not Linux 5.3+)
        exited = None

    def watch() -> None:
        if exited is not None:
            select.select([exited], [], [])
        else:
            while _alive(console):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="console-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
