"""Item 1 of issue 11: a queued job failed after a restart with "cannot import name 'TrainerCallback' from
'transformers'". The worker thread's first `from transformers import ...` waited on the Training Jobs page's first
import of transformers and was handed the package module from before transformers swapped in its lazy module.

Each case runs in a fresh interpreter (transformers not imported yet): one thread starts importing transformers and
is held inside its `__init__` by an import hook, the code under test runs in a second thread meanwhile, then the
first import is let go. Deterministic: the second thread always arrives while the package is half imported.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RACE = textwrap.dedent(
    """
    import importlib.abc, sys, threading, time

    inside = threading.Event()

    class HoldFirstImport(importlib.abc.MetaPathFinder):
        # Holds the thread that first imports transformers inside the package's __init__ for a moment.
        def find_spec(self, name, path, target=None):
            if name.startswith("transformers.") and not inside.is_set():
                inside.set()
                time.sleep(1.5)
            return None

    sys.meta_path.insert(0, HoldFirstImport())
    first = threading.Thread(target=lambda: __import__("transformers"))
    first.start()
    inside.wait(60)
    errors = []

    def under_test():
        try:
            exec(sys.argv[1], {})
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

    second = threading.Thread(target=under_test)
    second.start()
    first.join()
    second.join()
    print(errors[0] if errors else "ok")
    """
)


def test_item_1_worker_imports_transformers_while_another_thread_does() -> None:
    """The queued job's worker thread imports the training worker (JobManager._run) while the page imports
    transformers. Failed on the old code with ImportError: cannot import name 'TrainerCallback'."""
    result = subprocess.run(
        [sys.executable, "-c", RACE, "import training.worker"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok", result.stdout + result.stderr[-3000:]
