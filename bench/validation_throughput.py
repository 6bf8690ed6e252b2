"""Dataset validation throughput and memory against a plain `json.loads` loop over the same file.

Run from the repo root: `.venv/bin/python bench/validation_throughput.py [--mb 100] [--repeat 5]`.
It writes a realistic alpaca-style JSONL (fixed seed; about half the records hold a number, as in
LLaMA-Factory's alpaca_en_demo; 1% hold PII; 2% exact and 1% near duplicates) to a temp dir, then
times the baseline loop and `validate_file` in alternation and keeps the best run of each (the
machine may be shared), both in one process and in `validation_workers` processes (files of 16 MB
or more), and measures the peak memory of an in-process `validate_file` in fresh child processes
for the full file and a file a tenth its size (a worker holds at most that, for its part).
"""

import argparse
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
import psutil  # noqa: E402

from registry.settings import get_settings  # noqa: E402
from registry.validation import validate_file  # noqa: E402

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or have an they which one you had not "
    "but all their were can there been if more when will would who so no model data sales campaign retailer "
    "product customer shopper brand price store online search display video budget report weekly growth "
    "conversion click impression audience segment category season holiday promotion discount inventory "
    "analysis strategy performance channel placement creative revenue margin forecast trend increase "
    "reduce improve explain describe compare measure target optimize return spend share market team"
).split()
TASKS = ("open_qa", "general_qa", "classification", "closed_qa", "brainstorming", "summarization", "creative_writing")
VERBS = (
    "Explain",
    "Describe",
    "Summarize",
    "List three ways to",
    "Write a short note about",
    "Compare",
    "Suggest how to",
)
PII = (
    "Contact the analyst at maria.lopez@example.com for the raw file.",
    "Call the account team at (415) 555-0134 before Friday.",
    "The card on file is 4111 1111 1111 1111.",
    "Requests came from 10.24.108.7 during the test.",
    "Reach the EU desk on +44 20 7946 0958.",
)


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(6, 22))
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words)), str(rng.choice((3, 12, 2019, 2024, 45, 1200, 7))))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!", ";"))


def generate(path: Path, size_mb: float, seed: int = 7) -> int:
    """Write about `size_mb` of JSONL records and return how many."""
    rng = random.Random(seed)
    pool = [sentence(rng) for _ in range(4000)]
    target = int(size_mb * 1024 * 1024)
    written = rows = 0
    recent: list[dict[str, str]] = []
    with open(path, "wb") as handle:
        while written < target:
            roll = rng.random()
            if roll < 0.02 and recent:
                record = rng.choice(recent)
            elif roll < 0.03 and recent:
                source = rng.choice(recent)
                record = {**source, "output": source["output"].upper().replace(".", " .")}
            else:
                record = _record(rng, pool)
                recent = [*recent[-50:], record]
            line = orjson.dumps(record) + b"\n"
            handle.write(line)
            written += len(line)
            rows += 1
    return rows


def _record(rng: random.Random, pool: list[str]) -> dict[str, str]:
    topic = " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))
    output = " ".join(rng.sample(pool, rng.randint(2, 9)))
    if rng.random() < 0.01:
        output += " " + rng.choice(PII)
    return {
        "instruction": f"{rng.choice(VERBS)} {topic}.",
        "input": " ".join(rng.sample(pool, rng.randint(1, 3))) if rng.random() < 0.4 else "",
        "output": output,
        "category": rng.choice(TASKS),
    }


def json_loop(path: Path) -> float:
    """Seconds for the baseline: parse each line with the standard library, keep nothing."""
    start = time.perf_counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - start


def validate_timed(path: Path, workers: int) -> float:
    """Seconds for one validate_file run with `workers` processes (1: in-process)."""
    os.environ["RMN_LORA_VALIDATION_WORKERS"] = str(workers)
    start = time.perf_counter()
    validate_file(path)
    return time.perf_counter() - start


def best_times(path: Path, repeat: int, workers: int) -> tuple[float, float, float]:
    """Best of `repeat` alternating runs of each side, so a busy moment does not favour any."""
    baseline = alone = in_parts = float("inf")
    for _ in range(repeat):
        baseline = min(baseline, json_loop(path))
        alone = min(alone, validate_timed(path, 1))
        in_parts = min(in_parts, validate_timed(path, workers))
    return baseline, alone, in_parts


def _peak_child(path: str, use_tracemalloc: bool, out: "multiprocessing.Queue[float]") -> None:
    """Peak memory (MB) of one validate_file run in a fresh process: tracemalloc peak, or RSS growth.

    The child is forked with the bench's pages, so RSS growth is its peak RSS less its RSS at the start.
    """
    os.environ["RMN_LORA_VALIDATION_WORKERS"] = "1"  # the whole file in this one process: the most any process holds
    if use_tracemalloc:
        tracemalloc.start()
        validate_file(Path(path))
        out.put(tracemalloc.get_traced_memory()[1] / 2**20)
        return
    before = psutil.Process().memory_info().rss
    validate_file(Path(path))
    out.put(max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 2**20)


def peak_mb(path: Path, use_tracemalloc: bool) -> float:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(str(path), use_tracemalloc, queue))
    child.start()
    value = queue.get()
    child.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the generated file (default 100)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each side; the best counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rmn-bench-") as folder:
        big, small = Path(folder) / "big.jsonl", Path(folder) / "small.jsonl"
        rows = generate(big, args.mb)
        small_rows = generate(small, args.mb / 10)
        size, small_size = big.stat().st_size / 2**20, small.stat().st_size / 2**20
        print(
            f"generated {size:.1f} MB ({rows:,} rows); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        heap = peak_mb(big, True), peak_mb(small, True)
        rss = peak_mb(big, False), peak_mb(small, False)
        workers = get_settings().validation_workers
        started = validate_timed(big, workers)  # starts the worker processes, kept for every later file
        baseline, alone, in_parts = best_times(big, args.repeat, workers)
        report = validate_file(big)
        print(f"report: score {report.quality_score} ({report.band}), {report.issue_count:,} issues")
        print(f"json.loads loop: {size / baseline:.1f} MB/s")
        print(f"validation, in one process: {size / alone:.1f} MB/s = {baseline / alone:.2f}x the loop")
        print(
            f"validation, {workers} worker processes (the default here): {size / in_parts:.1f} MB/s ="
            f" {baseline / in_parts:.2f}x the loop (goal >= 0.5x); the first large file also starts them"
            f" ({started:.2f} s for that first run)"
        )
        print(
            f"validation peak memory, in one process: {size:.0f} MB file {heap[0]:.1f} MB vs {small_size:.0f} MB file"
            f" {heap[1]:.1f} MB (goal: flat) [tracemalloc; {heap[0] * 2**20 / rows:.0f} vs"
            f" {heap[1] * 2**20 / small_rows:.0f} bytes/row; RSS growth {rss[0]:.1f} vs {rss[1]:.1f} MB]"
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
