"""The process-wide runtime: one job manager and one evaluation manager per registry, one inference engine per process.

The job manager runs training and publish jobs (one queue, one concurrency limit).

Pages, scripts and the API all reach them through here, so a server never holds two model caches or two
queues over the same registry.
"""

import gc
import importlib
import logging
import os
import pkgutil
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from registry.layout import open_registry
from registry.settings import Settings
from training.jobs import JobManager

if TYPE_CHECKING:  # federation.engine pulls in torch when used; a page that only lists things need not load it
    from evaluation.health import HealthSampler
    from evaluation.runs import RunManager
    from federation.engine import InferenceEngine

PUBLISH = "publish"  # the job manager's kind of publish jobs
_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()
_evaluators: dict[Path, "RunManager"] = {}
_sampler: "HealthSampler | None" = None
_stack_warmer: threading.Thread | None = None
_stack_ready = threading.Event()


def job_manager() -> JobManager:
    """The manager of the current registry (`RMN_LORA_HOME` is read on every call, so tests can switch it)."""
    registry = open_registry()
    with _managers_lock:
        if registry.root not in _managers:
            manager = JobManager(registry, tasks={PUBLISH: _publish})
            manager.on_completed.append(_evaluate_completed_job)
            manager.on_submitted.append(_evaluate_base_first)
            _managers[registry.root] = manager
        return _managers[registry.root]


def _publish(context, params):
    """Publish jobs run in this manager too (one queue, one limit); the runner is the Models API's."""
    from services.models import run_publish

    return run_publish(context, params)


def _evaluate_completed_job(job) -> None:
    """A job with an evaluation dataset gets its adapter and its base model evaluated (linked by the job id),
    unless the `auto_evaluate` setting is off."""
    from evaluation.lineage import evaluate_job
    from registry.settings import get_settings

    if not get_settings().auto_evaluate:
        return

    evaluate_job(evaluation_manager(), job)


def _evaluate_base_first(job) -> None:
    """The job option "evaluate the base model first": its base model's run is queued with the job."""
    from evaluation.lineage import evaluate_base_first

    evaluate_base_first(evaluation_manager(), job)


def inference_engine() -> "InferenceEngine":
    """The engine every page, session and API call shares, so loaded models (the slow part) are loaded once."""
    from federation.engine import default_engine

    return default_engine()


def evaluation_manager() -> "RunManager":
    """The evaluation queue of the current registry; its worker thread starts with it."""
    from evaluation.runs import RunManager

    registry = open_registry()
    with _managers_lock:
        if registry.root not in _evaluators:
            _evaluators[registry.root] = RunManager(registry)
        return _evaluators[registry.root]


def health_sampler() -> "HealthSampler":
    """The process's one health sampler (a daemon thread, about an hour of samples), started on first use."""
    global _sampler
    from evaluation.health import HealthSampler

    with _managers_lock:
        if _sampler is None:
            _sampler = HealthSampler(open_registry().root)
        return _sampler


def apply_settings(settings: Settings) -> None:
    """Settings that a running console takes at once: the job manager's concurrency and the engine's cache size."""
    job_manager().set_concurrency(settings.max_concurrent_jobs)
    inference_engine().resize(settings.max_loaded_models)


# What the pages import before drawing anything (pandas alone is seconds on a loaded 2-core machine), and every
# service module they call (Home's health strip alone pulled in httpx and the evaluation modules on first use).
# None of them imports the training stack, whose import must stay with `training.stack` (see item 1 of issue 11).
PAGE_LIBRARIES = (
    "pandas",
    "pyarrow",
    "plotly.graph_objects",
    *(f"services.{module.name}" for module in pkgutil.iter_modules([str(Path(__file__).parent)])),
)
_pages_warmer: threading.Thread | None = None


def warm_page_libraries() -> threading.Thread:
    """Import what the pages import, in a background thread started with the server (serve.py), so the first page
    a user opens draws without waiting for pandas and plotly. Once per process; returns the thread (tests join it)."""
    global _pages_warmer
    with _managers_lock:
        if _pages_warmer is None:
            _pages_warmer = threading.Thread(target=_import_page_libraries, name="page-libraries-warmup", daemon=True)
            _pages_warmer.start()
        return _pages_warmer


def _import_page_libraries() -> None:
    for name in PAGE_LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 — a page that needs it shows the error where it is used
            logging.getLogger("rmn_console").exception("warming %s failed", name)
    freeze_long_lived_objects()


def freeze_long_lived_objects() -> None:
    """Move every object alive now (the imported libraries, nearly all of them) out of the garbage collector's reach.

    Streamlit runs a full collection after every script run and every fragment run (`runner.postScriptGC`), and a
    full collection walks every tracked object: 0.07 s of CPU with the page libraries, 0.25 s once the training
    stack is imported (580,000 objects), paid by each page view and each fragment tick (Training Jobs every 2 s,
    System Health every 5 s) while holding the GIL. Frozen objects are still freed by reference counting; only a
    cycle among them that later becomes garbage stays, and module-level objects live as long as the process (a
    loaded PEFT model is freed by reference counting alone: checked). Today's garbage is collected first, once."""
    gc.collect()
    gc.freeze()


def warm_training_stack() -> None:
    """Import the training stack (torch, transformers, PEFT, TRL: seconds idle, minutes on a loaded machine) in a
    background thread, once per process, so the first Start Training does not wait for it, and start the local
    backend's process server, which imports it too, so the job's process starts training at once. The pages that submit
    jobs call this after they are drawn, and only they: the thread runs at a low CPU priority, but its imports hold
    the GIL, so other pages of the server render about half as fast until it is done."""
    global _stack_warmer
    with _managers_lock:
        if _stack_warmer is not None:
            return
        if open_registry().settings.training_backend == "local":
            from training.data_parallel import start_process_server

            start_process_server()  # from this thread: the server must not inherit the warm-up's lower priority
        _stack_warmer = threading.Thread(target=_warm, name="training-stack-warmup", daemon=True)
        _stack_warmer.start()


def _warm() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # this thread only, on Linux
    except (AttributeError, OSError):
        pass
    try:
        import training.worker  # noqa: F401 — the import is the work: worker pulls in the whole stack
    except Exception:  # noqa: BLE001 — a broken stack shows where it is used (preflight), with its message
        logging.getLogger("rmn_console").exception("warming the training stack failed")
    else:
        freeze_long_lived_objects()
    finally:
        _stack_ready.set()


def training_stack_ready() -> bool:
    """Whether the training stack is imported (a submit then checks the job in about a second), by the warm-up or
    by a job (`preflight` is defined below the stack's import, so a half-imported worker does not count)."""
    return _stack_ready.is_set() or hasattr(sys.modules.get("training.worker"), "preflight")


def wait_for_training_stack(timeout: float | None = None) -> bool:
    """Wait for a warm-up started by `warm_training_stack`; False if it has not finished within `timeout`."""
    return _stack_ready.wait(timeout)
