"""The CPU priority of training that runs beside the console's server.

A job's processes at the server's priority take the CPU in proportion to their number: with two data-parallel ranks
(load 5-6) a page took 8-10 s to render instead of 0.7-1.9 s idle (issue 11's closing walk). Linux shares a busy CPU
by nice weight (nice 0 is 1024, nice 10 is 110), so ranks 10 steps below the server leave it most of a core when it
has work and lose nothing when it is idle: nice only decides who runs under contention.

Only separate processes are lowered. A worker thread inside the server holds the GIL while it runs Python: lowered,
it would be preempted while holding the GIL by any busier process and the server's threads would wait for it
(priority inversion), so in-process jobs keep the server's priority.
"""

import os

TRAINING_NICE_INCREMENT = 10
"""How many nice steps below the process that started it a training process runs (relative, so a console started
at nice 5 gets ranks at 15); 19 is the floor."""


def lower_this_process() -> int:
    """Lower every thread of this process below its parent's priority, and so the threads it starts later (on Linux
    a nice value is a thread's, inherited at creation); the nice value it runs at."""
    target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + TRAINING_NICE_INCREMENT)
    threads = [int(tid) for tid in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError:  # the thread ended meanwhile, or a sandbox refuses: that thread keeps its priority
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)
