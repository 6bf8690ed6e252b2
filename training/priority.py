"""The CPU priority of training that runs beside the console's server.

A job's processes at the server's priority take the CPU in proportion to their number: with two data-parallel ranks
(load 5-6) a page took 8-10 s to render instead of 0.7-1.9 s idle (issue 11's closing walk). Linux shares a busy CPU
by nice weight (nice 0 is 1024, nice 10 is 110), so ranks 10 steps below the server leave it most of a core when it
has work and lose nothing when it is idle: nice only decides who runs under contention.

Only separate processes are lowered, so every job trains in one (`training.data_parallel`). A worker thread inside
the server holds the GIL while it runs Python: lowered, it would be preempted while holding the GIL by any busier
process and the server's threads would wait for it (priority inversion); a lowered team of a job's OpenMP threads in
the server made the job 35% slower (the team waits for its slowest thread at every barrier).
"""

import os
import threading

TRAINING_NICE_INCREMENT = 10
"""How many nice steps below the process that started it a training process runs (relative, so a console started
at nice 5 gets ranks at 15); 19 is the floor."""


def lower_this_process(below: int | None = None) -> int:
    """Lower every thread of this process below `below` (a nice value; this process's own by default), and so the
    threads it starts later (on Linux a nice value is a thread's, inherited at creation); the nice value it runs at."""
    start = os.getpriority(os.PRIO_PROCESS, 0) if below is None else below
    target = min(19, start + TRAINING_NICE_INCREMENT)
    threads = [int(tid) for tid in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:  # the thread ended meanwhile, or a sandbox refuses: that thread keeps its priority
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def lower_this_thread() -> None:
    """Lower the calling thread only (what it starts, a process included, inherits it); it cannot be raised back."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, _own_nice() + TRAINING_NICE_INCREMENT))
    except (AttributeError, OSError):  # not Linux, or a sandbox refuses: it keeps its priority
        pass


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
