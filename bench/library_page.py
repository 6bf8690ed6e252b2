"""Dataset Library page rerun time with 1,000 datasets against 10, in one invocation.

Goal (issue 2): a rerun under 0.5 s with 1,000 datasets, and at most 2x the 10-dataset time.
Run: `PYTHONPATH=. .venv/bin/python bench/library_page.py` (or `make bench`).
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RERUNS = 15


def fill_registry(home: Path, count: int) -> None:
    os.environ["RMN_LORA_HOME"] = str(home)
    from services import upload_dataset

    source = home.parent / f"src-{count}.jsonl"
    for index in range(count):
        rows = [
            {"instruction": f"dataset {index} question {r}", "input": "", "output": f"answer {r}"} for r in range(20)
        ]
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
        upload_dataset(f"bench_{index:04d}", source, description=f"bench dataset {index}")


def rerun_seconds(home: Path) -> float:
    """Median wall time of a rerun of the page, the first (cold) run excluded."""
    os.environ["RMN_LORA_HOME"] = str(home)
    app = AppTest.from_file(str(ROOT / "views" / "dataset_library.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    times = []
    for _ in range(RERUNS):
        start = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        small, large = Path(folder) / "ten", Path(folder) / "thousand"
        fill_registry(small, 10)
        start = time.perf_counter()
        fill_registry(large, 1000)
        print(f"imported 1,000 datasets in {time.perf_counter() - start:.1f} s")
        ten, thousand = rerun_seconds(small), rerun_seconds(large)
    print(
        f"library page rerun: 1,000 datasets {thousand * 1000:.0f} ms vs 10 datasets {ten * 1000:.0f} ms "
        f"= {thousand / ten:.2f}x (goal: < 500 ms and <= 2x)"
    )


if __name__ == "__main__":
    main()
