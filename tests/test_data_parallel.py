"""Local data-parallel training: one job as 2 single-thread processes (DDP over gloo) through the job manager, as a
user runs it: it trains, cancels, resumes and matches one process; a killed console leaves no rank behind."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.split_training import SETTINGS, cancel_then_resume_to_the_end, gaps_from_one_process, mapping_setup

TWO = {**SETTINGS, "data_parallel": "on"}
needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="data parallel needs 2 cores")


@pytest.fixture
def setup(registry, tmp_path, monkeypatch):
    return mapping_setup(tmp_path, monkeypatch)


def test_the_rule_splits_large_fp32_sft_jobs_over_the_cores():
    from training.config import DATA_PARALLEL_MIN_EXAMPLES, DATA_PARALLEL_MIN_PARAMS, build_config

    def processes(cores=2, parameters=135_000_000, device="cpu", examples=DATA_PARALLEL_MIN_EXAMPLES, **values):
        config = build_config(adapter_name="x", train_dataset="d", max_steps=2, **{"batch_size": 8, **values})
        return config.processes(device=device, cores=cores, parameters=parameters, examples=examples)

    assert build_config(adapter_name="x", train_dataset="d").data_parallel == "auto", "the default"

    assert processes(data_parallel="auto") == (2, "Data parallel is auto: 2 single-thread processes on 2 cores")
    assert processes(data_parallel="auto", cores=4)[0] == 4
    assert processes(data_parallel="auto", cores=4, batch_size=6)[0] == 3, "as many as split the batch"
    assert processes(data_parallel="auto", parameters=DATA_PARALLEL_MIN_PARAMS - 1)[0] == 1
    assert "exchanging gradients" in processes(data_parallel="auto", parameters=1_000_000)[1]
    # A short job does not repay starting the processes; the whole job's examples count, also when it resumes.
    short = processes(data_parallel="auto", examples=DATA_PARALLEL_MIN_EXAMPLES - 1)
    assert short[0] == 1 and f"{DATA_PARALLEL_MIN_EXAMPLES - 1} training examples planned" in short[1], short
    assert processes(data_parallel="on", examples=8)[0] == 2, "on splits whatever the length"
    steps = build_config(adapter_name="x", train_dataset="d", max_steps=30, batch_size=4, gradient_accumulation=2)
    assert steps.planned_examples(rows=10) == 240, "max steps x the global batch"
    passes = build_config(adapter_name="x", train_dataset="d", max_steps=None, epochs=1.5)
    assert passes.planned_examples(rows=101) == 152, "passes over the rows"
    for one in ({"objective": "dpo"}, {"quantization": "4bit"}, {"cores": 1}, {"device": "cuda"}, {"batch_size": 5}):
        assert processes(data_parallel="auto", **one)[0] == 1, one
    assert "choose a multiple of 2" in processes(data_parallel="auto", batch_size=5)[1]
    # on: whatever the model and objective, as long as the batch splits (KTO keeps 2 examples a process).
    assert processes(data_parallel="on", parameters=1_000_000, objective="dpo")[0] == 2
    assert processes(data_parallel="on", objective="kto", batch_size=2)[0] == 1
    assert processes(data_parallel="off") == (1, "Data parallel is off: one process")
    assert (
        build_config(adapter_name="x", train_dataset="d", max_steps=2, data_parallel=" Auto ").data_parallel == "auto"
    )


@needs_two_cores
def test_a_two_process_job_cancels_resumes_and_trains_like_one_process(setup, tmp_path):
    """Start on 2 processes, cancel mid-run, resume, finish; then compare with one process, same global batch."""
    from services.training import job_manager, submit_training_job

    steps = 40
    manager = job_manager()
    job_id = submit_training_job(
        "retailer",
        "two_ranks",
        "map_sft",
        base_model="tiny-llama",
        config={**TWO, "max_steps": steps, "save_steps": 1000},
    )
    job, folder, lines = cancel_then_resume_to_the_end(manager, job_id, steps, setup, limit=1800)
    log = folder.log_text()
    assert log.count("Data parallel: 2 processes of 1 thread, 2 examples each per step (global batch 4)") == 2
    assert log.count("the sum of its 2 training processes' own") == 2, "the peak is both ranks' peaks summed"
    # The card's rate is the job's: both ranks' FLOPs over both ranks' peaks (each rank alone would be about half).
    assert all(0 < line["efficiency"] < 1 for line in lines if line["step"] > 1)

    adapter = Path(job.adapter_path)

    # Same seed, the same global batches (each epoch's order from seed + epoch, grouped by the global batch; rank r
    # takes its half of each), the loss normalised by the answer tokens of the whole global batch, and a resume that
    # continues that order: the same training as one process, to float rounding (the gradients are summed in
    # another order). A cancel that fell mid-epoch once left the B matrices up to 2.3% away: the resumed epoch's
    # order came from the generator as it stood after loading, and rank 1 was not told the epoch.
    gaps = gaps_from_one_process(adapter, steps, tmp_path / "one-process")
    print(
        f"2 processes vs 1: LoRA B relative gaps max {max(gaps.values()):.2e}, mean {sum(gaps.values()) / len(gaps):.2e}"
    )
    assert max(gaps.values()) <= 1e-4, gaps


def test_a_one_process_job_trains_in_a_process_of_its_own_below_the_console(setup):
    """A job trained in a thread of the console's server shared its GIL and CPU priority with the pages (Training Jobs
    took 6.4 s to draw while one trained, issue 11): every local job trains in a process of its own, lowered."""
    from services.training import job_manager, submit_training_job
    from training.priority import TRAINING_NICE_INCREMENT

    manager = job_manager()
    job_id = submit_training_job(
        "retailer",
        "one_rank",
        "map_sft",
        base_model="tiny-llama",
        config={**SETTINGS, "max_steps": 2, "data_parallel": "auto"},
    )
    job = manager.wait(job_id, timeout=1800)
    assert job.status == "completed", job.error
    log = manager.log_text(job_id)
    assert "Data parallel is auto: one process" in log and "exchanging gradients would cost more" in log
    assert "Data parallel: 2 processes" not in log
    trained = re.search(r"Training in process (\d+) \((\d+) threads\) at nice (\d+), below the console", log)
    assert trained, log
    assert int(trained[1]) != os.getpid()
    assert int(trained[3]) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + TRAINING_NICE_INCREMENT)
    assert [line["step"] for line in manager.metrics(job_id) if "loss" in line] == [1, 2], (
        "progress reaches the console"
    )
    assert job.final_metrics["train_loss"] > 0 and Path(job.adapter_path, "adapter_model.safetensors").is_file()


def test_a_job_whose_process_is_killed_fails_and_the_console_goes_on(setup):
    """The kernel's out-of-memory killer ends a job's process with SIGKILL: the job fails and says so, resumable from
    its checkpoint, and the console (here this test's process) keeps running its queue."""
    from services.training import job_manager, submit_training_job

    manager = job_manager()
    config = {**SETTINGS, "max_steps": 100_000, "save_steps": 2, "data_parallel": "off"}
    job_id = submit_training_job("retailer", "oom", "map_sft", base_model="tiny-llama", config=config)
    deadline = time.monotonic() + 1800
    while not manager.latest_checkpoint(job_id):
        assert manager.get(job_id).status in {"queued", "running"} and time.monotonic() < deadline, manager.get(job_id)
        time.sleep(0.2)
    pid = int(re.search(r"Training in process (\d+)", manager.log_text(job_id))[1])
    os.kill(pid, signal.SIGKILL)
    job = manager.wait(job_id, timeout=600)
    assert job.status == "failed"
    assert "The training process was killed (SIGKILL)" in job.error and "memory" in job.error, job.error
    assert manager.latest_checkpoint(job_id) is not None, "resume continues from its checkpoint"
    after = submit_training_job(
        "retailer", "after", "map_sft", base_model="tiny-llama", config={**SETTINGS, "max_steps": 1}
    )
    assert manager.wait(after, timeout=1800).status == "completed"


def test_a_job_that_crashes_in_its_process_fails_with_the_error(setup):
    """A weights file cut short after its header passes the checks at submission (they read the header only) and
    fails the load in the job's process: the job fails naming the error, with the traceback in its log."""
    from services.training import job_manager, submit_training_job

    weights = setup / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: 8 + int.from_bytes(data[:8], "little") + 16])
    manager = job_manager()
    job_id = submit_training_job(
        "retailer", "broken", "map_sft", base_model="tiny-llama", config={**SETTINGS, "max_steps": 1}
    )
    job = manager.wait(job_id, timeout=1800)
    assert job.status == "failed"
    assert job.error.startswith("Training failed ("), job.error
    assert "Traceback" in manager.log_text(job_id)


CONSOLE = textwrap.dedent(
    """
    import sys, time
    from services.training import job_manager, submit_training_job

    manager = job_manager()
    job_id = submit_training_job("retailer", "killed", "map_sft", base_model="tiny-llama", config=%r)
    print(job_id, flush=True)
    sys.stdin.readline()  # a line: exit normally, as a stopped server does (the job thread is still running it)
    sys.exit(0)
    """
)


@needs_two_cores
@pytest.mark.parametrize("end", ["killed", "exits"])
def test_a_stopped_console_leaves_no_training_process_and_the_job_resumes(setup, registry, end):
    """SIGKILL the console while its 2 ranks train, or let it exit as a stopped server does: both ranks end with it;
    the next console marks the job interrupted and (once) resumes it from its checkpoint to the end."""
    from services.training import job_manager

    steps = 100  # the ranks start from the process server at once: 30 tiny steps could end before the kill
    config = {**TWO, "max_steps": steps, "save_steps": 5}
    console = subprocess.Popen(
        [sys.executable, "-c", CONSOLE % config],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job_id = console.stdout.readline().strip()
        assert job_id.startswith("job_"), "the console did not submit the job"
        folder = registry.jobs / job_id
        deadline = time.monotonic() + 1800
        while not list((folder / "checkpoints").glob("checkpoint-*/trainer_state.json")):
            assert console.poll() is None and time.monotonic() < deadline, "no checkpoint from the 2-process job"
            time.sleep(0.2)
        # The ranks are forked from the console's process server (a child of the console, which ends with it).
        children = psutil.Process(console.pid).children(recursive=True)
        training = [child for child in children if child.ppid() != console.pid]
        assert len(training) == 2, [(child.pid, child.ppid(), child.cmdline()) for child in children]
        if end == "killed":
            console.send_signal(signal.SIGKILL)
        else:
            console.stdin.write("exit\n")
            console.stdin.flush()
        console.wait(timeout=600)
        gone, alive = psutil.wait_procs(training, timeout=30)
        assert not alive, f"ranks outlived the killed console: {[rank.pid for rank in alive]}"
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()

    manager = job_manager()
    assert manager.get(job_id).status == "interrupted"
    if end == "exits":
        return
    step = int(manager.latest_checkpoint(job_id).name.split("-")[1])
    assert step < steps, manager.log_text(job_id)[-3000:]
    manager.resume(job_id)
    job = manager.wait(job_id, timeout=1800)
    assert job.status == "completed", job.error
    assert [line["step"] for line in manager.metrics(job_id) if "loss" in line] == list(range(1, steps + 1))


MAIN_SCRIPT = textwrap.dedent(
    """
    from pathlib import Path

    if __name__ == "__mp_main__":  # a rank ran this script again, as spawn does with the parent's main script
        Path(%r).touch()
    if __name__ == "__main__":
        from services.training import job_manager, submit_training_job

        job_id = submit_training_job("retailer", "ranks", "map_sft", base_model="tiny-llama", config=%r)
        job = job_manager().wait(job_id, timeout=1800)
        print(job.status, job.error)
    """
)


@needs_two_cores
def test_a_rank_does_not_run_the_console_s_main_script_again(setup, tmp_path):
    """Under Streamlit the main script is app.py: a rank that runs it again runs the console's start-up code (the
    registry's scratch clean-up, settings) without a session, so the ranks start from `_rank_main` alone."""
    ran = tmp_path / "main script ran in a rank"
    script = tmp_path / "console_main.py"
    script.write_text(MAIN_SCRIPT % (str(ran), {**TWO, "max_steps": 2}))
    run = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.stdout.split()[:1] == ["completed"], run.stdout + run.stderr[-2000:]
    assert not ran.exists()


@needs_two_cores
def test_the_ranks_train_below_the_console_s_cpu_priority(setup):
    """Ranks at the console's priority took the CPU from its pages (8-10 s a page while a job trained, issue 11):
    each rank lowers itself at start, and rank 0 logs the nice value it reads back (os.getpriority) in the rank."""
    from services.training import job_manager, submit_training_job
    from training.priority import TRAINING_NICE_INCREMENT

    manager = job_manager()
    job_id = submit_training_job(
        "retailer", "low_ranks", "map_sft", base_model="tiny-llama", config={**TWO, "max_steps": 2}
    )
    job = manager.wait(job_id, timeout=1800)
    assert job.status == "completed", job.error
    console = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(19, console + TRAINING_NICE_INCREMENT)
    assert f"Training processes run at nice {expected}, below the console" in manager.log_text(job_id)
    assert os.getpriority(os.PRIO_PROCESS, 0) == console, "the console itself keeps its priority"


LOWERED = textwrap.dedent(
    """
    import os, threading
    from training.priority import lower_this_process

    def nice_of_a_thread(started=None):
        seen, done = [], threading.Event()
        def run():
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            if started is not None:
                started.set()
            done.wait()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return seen, done, thread

    before = threading.Event()
    _, release, earlier = nice_of_a_thread(before)
    before.wait()
    main = lower_this_process()
    earlier_now = os.getpriority(os.PRIO_PROCESS, earlier.native_id)
    later, done, thread = nice_of_a_thread()
    done.set(); release.set(); thread.join()
    print(main, earlier_now, later[0])
    """
)


def test_lowering_a_process_lowers_its_threads_started_before_and_after():
    """On Linux a nice value is a thread's: a thread that torch (or Python) started before the rank lowered itself
    would keep the console's priority if only the calling thread were lowered."""
    from training.priority import TRAINING_NICE_INCREMENT

    run = subprocess.run(
        [sys.executable, "-c", LOWERED],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + TRAINING_NICE_INCREMENT)
    assert run.stdout.split() == [str(expected)] * 3, run.stdout + run.stderr
