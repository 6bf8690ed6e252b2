"""Is a difference between two runs on the same examples real? Paired tests only: the examples are the same.

- Exact match (pass/fail per example): the exact McNemar test, i.e. a two-sided binomial test on the examples
  whose outcome changed (b went from fail to pass, c from pass to fail) with p = 1/2.
- Token F1, ROUGE-L (a score per example): a paired bootstrap of the mean difference, percentile 95% interval,
  with a fixed seed so the same runs always give the same interval.
"""

from collections.abc import Sequence

from pydantic import BaseModel

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20261206


class McNemar(BaseModel):
    """b: examples only the second run gets right; c: only the first; p: exact two-sided p-value."""

    b: int
    c: int
    p_value: float


class BootstrapInterval(BaseModel):
    """The mean paired difference (second minus first) and its 95% percentile interval."""

    mean_difference: float
    low: float
    high: float
    resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def mcnemar_exact(first: Sequence[bool], second: Sequence[bool]) -> McNemar:
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise ValueError("McNemar's test pairs examples: both runs must score the same examples")
    b = sum(1 for x, y in zip(first, second, strict=True) if not x and y)
    c = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemar(b=b, c=c, p_value=min(1.0, p))


def paired_bootstrap(
    first: Sequence[float],
    second: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> BootstrapInterval:
    """Resample examples with replacement (the same indices for both runs) and take the 2.5th and 97.5th
    percentiles of the mean difference."""
    import numpy as np

    if len(first) != len(second):
        raise ValueError("a paired bootstrap needs both runs to score the same examples")
    if not first:
        raise ValueError("a bootstrap needs at least one example")
    differences = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(differences))  # bound the index matrix's memory on large sets
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        indices = rng.integers(0, len(differences), size=(count, len(differences)))
        means[start : start + count] = differences[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return BootstrapInterval(
        mean_difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        resamples=resamples,
        seed=seed,
    )


def format_p(p: float) -> str:
    """How a p-value is shown everywhere: 'p < 0.001' below a thousandth, 'p = 0.042' otherwise."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
