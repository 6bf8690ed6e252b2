"""Comparing runs on the same examples: a table of metrics, the paired significance of each difference against
the first run (the baseline), and the examples whose outcome changed.

Runs compare only when they scored the same dataset content (its hash) and the same examples; otherwise the
comparison is refused with the reason, because unpaired figures would look comparable and not be.
"""

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from evaluation.runs import RunState, RunStatus
from evaluation.significance import BootstrapInterval, McNemar, format_p, mcnemar_exact, paired_bootstrap
from registry.errors import ConsoleError

TABLE_METRICS = ("exact_match", "token_f1", "rouge_l", "perplexity", "preference_accuracy", "latency_p50_ms")
BOOTSTRAPPED = ("token_f1", "rouge_l")


class CompareError(ConsoleError):
    """Runs that cannot be compared: unfinished, other datasets, other examples."""


class PairTest(BaseModel):
    """One run against the baseline on the same examples."""

    baseline: str
    run: str
    mcnemar: McNemar | None = None
    preference_mcnemar: McNemar | None = None
    bootstrap: dict[str, BootstrapInterval]

    @property
    def summary(self) -> str:
        parts = []
        if self.mcnemar is not None:
            parts.append(
                f"exact match: {format_p(self.mcnemar.p_value)} (McNemar, {self.mcnemar.b}+/{self.mcnemar.c}-)"
            )
        if self.preference_mcnemar is not None:
            parts.append(f"preference: {format_p(self.preference_mcnemar.p_value)} (McNemar)")
        for metric, interval in self.bootstrap.items():
            parts.append(f"{metric} {interval.mean_difference:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]")
        return "; ".join(parts)


class Comparison(BaseModel):
    runs: list[RunState]
    table: list[dict[str, Any]]
    tests: list[PairTest]
    changed: list[dict[str, Any]]


def compare_runs(runs: Sequence[RunState], rows: Sequence[Sequence[dict[str, Any]]]) -> Comparison:
    if len(runs) < 2:
        raise CompareError("Choose at least two evaluations to compare.")
    unfinished = [r.id for r in runs if r.status != RunStatus.COMPLETED]
    if unfinished:
        raise CompareError(f"{', '.join(unfinished)} has not completed; only completed evaluations compare.")
    baseline = runs[0]
    for run in runs[1:]:
        if run.config.source.get("content_hash") != baseline.config.source.get("content_hash"):
            raise CompareError(
                f"{run.id} scored {run.config.source.get('name')!r} and {baseline.id} scored "
                f"{baseline.config.source.get('name')!r} (other content): compare runs on the same dataset."
            )
    indices = [[row["index"] for row in run_rows] for run_rows in rows]
    if any(index != indices[0] for index in indices[1:]):
        raise CompareError("These runs scored different examples (another limit?): compare runs of the same size.")
    table = [
        {"run": run.id, "target": run.config.target.label, **{m: run.metrics.get(m) for m in TABLE_METRICS}}
        for run in runs
    ]
    tests = [_pair(baseline, rows[0], run, run_rows) for run, run_rows in zip(runs[1:], rows[1:], strict=True)]
    return Comparison(runs=list(runs), table=table, tests=tests, changed=_changed(runs, rows))


def _pair(
    baseline: RunState, base_rows: Sequence[dict[str, Any]], run: RunState, run_rows: Sequence[dict[str, Any]]
) -> PairTest:
    shared = set(baseline.config.metrics) & set(run.config.metrics)
    mcnemar = (
        mcnemar_exact([bool(r["exact_match"]) for r in base_rows], [bool(r["exact_match"]) for r in run_rows])
        if "exact_match" in shared
        else None
    )
    preference = (
        mcnemar_exact([bool(r["preferred"]) for r in base_rows], [bool(r["preferred"]) for r in run_rows])
        if "preference_accuracy" in shared
        else None
    )
    bootstrap = {
        metric: paired_bootstrap([float(r[metric]) for r in base_rows], [float(r[metric]) for r in run_rows])
        for metric in BOOTSTRAPPED
        if metric in shared
    }
    return PairTest(
        baseline=baseline.id, run=run.id, mcnemar=mcnemar, preference_mcnemar=preference, bootstrap=bootstrap
    )


def _changed(runs: Sequence[RunState], rows: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Examples where the runs disagree on exact match (or on the preference), with every run's answer."""
    key = "exact_match" if all("exact_match" in r.config.metrics for r in runs) else "preferred"
    if key == "preferred" and not all("preference_accuracy" in r.config.metrics for r in runs):
        return []
    changed = []
    for position, first in enumerate(rows[0]):
        outcomes = [bool(run_rows[position][key]) for run_rows in rows]
        if len(set(outcomes)) > 1:
            item = {"index": first["index"], "prompt": first["prompt"], "reference": first.get("reference")}
            for run, run_rows, outcome in zip(runs, rows, outcomes, strict=True):
                item[run.id] = {"prediction": run_rows[position].get("prediction"), "pass": outcome}
            changed.append(item)
    return changed
