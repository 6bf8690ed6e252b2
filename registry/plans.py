"""Campaign plans: the one readable, checkable answer format of the planning task, and the judge that scores it.

A plan is a working line and three fixed-format lines, easy to read and for a small model to copy:

    $5,000, top 2 with a lower bound above 0: video -0.04 no, sponsored_product +0.17 yes +0.30, onsite_display +0.08 yes +0.20 (funded: 2)
    Channel: sponsored_product
    Budget: sponsored_product 60% ($3,000), onsite_display 40% ($2,000)
    Expected ROAS uplift: +0.26 (+0.08 to +0.38)

The working line shows the steps a plan is made from, each one beside what it depends on: the budget and how many
placements it funds (2 below $10,000, else 3), then each placement in the priors' order with its lower bound, funded
("yes", and its mean) when that is above zero, until the budget's count is funded; then how many are, which sets the
split by rank (one: 100%; two: 60/40; three: 50/30/20). It is there for the model to write its way to the split, not
to be judged: `parse_plan` reads the three lines and ignores any other.

The planning generator computes the reference plan from the uplift priors (the uplift line is the share-weighted
mean of the funded placements' priors, and its range runs from the lowest to the highest bound of their intervals),
so the reference carries the priors' answer and `judge_plan(prediction, reference)` needs nothing else: the
recommended channel must match, every share of the split must be within a tolerance (and its dollars with it), and
the stated uplift and its range must lie inside that range. A plan passes when all three hold. An answer that is
not a plan fails every criterion.
"""

import re

from pydantic import BaseModel

NO_CHANNEL = "none"
SHARE_TOLERANCE = 5.0  # percentage points of the budget, for shares and dollar amounts alike
UPLIFT_SLACK = 0.005  # half a unit in the second decimal: the rounding of the rendered interval
CRITERIA = ("channel", "split", "uplift")

_NUMBER = r"[+-]?\d+(?:\.\d+)?"
_CHANNEL = re.compile(r"^\s*channel\s*:\s*([A-Za-z_]+)\s*\.?\s*$", re.I | re.M)
_BUDGET = re.compile(r"^\s*budget\s*:(.*)$", re.I | re.M)
_SHARE = re.compile(r"([A-Za-z_]+)\s+(\d+(?:\.\d+)?)\s*%(?:\s*\(\s*\$\s*([\d,]+(?:\.\d+)?)\s*\))?")
_UPLIFT = re.compile(
    rf"^\s*expected roas uplift\s*:\s*(?:({_NUMBER})\s*\(\s*({_NUMBER})\s*to\s*({_NUMBER})\s*\)|(unknown))",
    re.I | re.M,
)


class Allocation(BaseModel):
    placement: str
    share: float  # percent of the budget
    dollars: float | None = None


class Plan(BaseModel):
    """A parsed plan: the recommended channel, the split, and the expected uplift with its interval (None: unknown)."""

    channel: str
    split: list[Allocation]
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None

    @property
    def budget(self) -> float | None:
        """The campaign budget the dollars add up to (None when the plan states no dollars)."""
        if not self.split or any(a.dollars is None for a in self.split):
            return None
        return sum(a.dollars or 0.0 for a in self.split)


class PlanJudgement(BaseModel):
    """One prediction against its reference plan: each criterion, and the overall pass (all of them)."""

    channel: bool
    split: bool
    uplift: bool
    parsed: bool

    @property
    def passed(self) -> bool:
        return self.channel and self.split and self.uplift

    def criteria(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in CRITERIA}


def working_line(budget: int, limit: int, candidates: list[tuple[str, float, float | None]]) -> str:
    """The line before the plan: the budget and how many placements it funds, then each placement in the priors'
    order (best mean first) with its lower bound and whether it is funded (with its mean), until `limit` are; then
    how many are funded, which sets the split. `candidates`: (placement, mean, lower bound or None) as the prompt
    shows them."""
    checks, funded = [], []
    for name, mean, low in candidates:
        if len(funded) == limit:
            break
        shown = "<NA>" if low is None else f"{low:+.2f}"
        if low is not None and low > 0:
            funded.append(mean)
            checks.append(f"{name} {shown} yes {mean:+.2f}")
        else:
            checks.append(f"{name} {shown} no")
    return (
        f"${budget:,}, top {limit} with a lower bound above 0: "
        + ", ".join(checks)
        + f" (funded: {len(funded) or NO_CHANNEL})"
    )


def render_plan(plan: Plan) -> str:
    """The three lines of a plan (the generator's answer); `parse_plan(render_plan(p))` gives `p` back."""
    if not plan.split:
        return (
            f"Channel: {NO_CHANNEL}\nBudget: none (no placement has a measured uplift above zero: run a test first)\n"
            "Expected ROAS uplift: unknown"
        )
    parts = ", ".join(
        f"{a.placement} {a.share:g}%" + ("" if a.dollars is None else f" (${a.dollars:,.0f})") for a in plan.split
    )
    return (
        f"Channel: {plan.channel}\nBudget: {parts}\n"
        f"Expected ROAS uplift: {plan.uplift:+.2f} ({plan.uplift_low:+.2f} to {plan.uplift_high:+.2f})"
    )


def parse_plan(text: str) -> Plan | None:
    """The plan in `text`, or None when it lacks a channel, a budget or an uplift line."""
    channel, budget, uplift = _CHANNEL.search(text), _BUDGET.search(text), _UPLIFT.search(text)
    if not (channel and budget and uplift):
        return None
    split = [
        Allocation(
            placement=name.lower(),
            share=float(share),
            dollars=None if dollars is None else float(dollars.replace(",", "")),
        )
        for name, share, dollars in _SHARE.findall(budget.group(1))
    ]
    mean, low, high, unknown = uplift.groups()
    if unknown:
        return Plan(channel=channel.group(1).lower(), split=split, uplift=None, uplift_low=None, uplift_high=None)
    return Plan(
        channel=channel.group(1).lower(),
        split=split,
        uplift=float(mean),
        uplift_low=float(low),
        uplift_high=float(high),
    )


def is_plan(text: str) -> bool:
    return parse_plan(text) is not None


def judge_plan(
    prediction: str, reference: str, *, tolerance: float = SHARE_TOLERANCE, slack: float = UPLIFT_SLACK
) -> PlanJudgement:
    """Score `prediction` against the reference plan the priors computed (see the module docstring)."""
    expected = parse_plan(reference)
    if expected is None:
        raise ValueError(f"the reference is not a plan: {reference[:80]!r}")
    predicted = parse_plan(prediction)
    if predicted is None:
        return PlanJudgement(channel=False, split=False, uplift=False, parsed=False)
    return PlanJudgement(
        channel=predicted.channel == expected.channel,
        split=_split_agrees(predicted, expected, tolerance),
        uplift=_uplift_within(predicted, expected, slack),
        parsed=True,
    )


def _split_agrees(predicted: Plan, expected: Plan, tolerance: float) -> bool:
    """The same placements, once each, shares adding up to 100% and each (and its dollars) within `tolerance`."""
    shares = {a.placement: a for a in predicted.split}
    if len(shares) != len(predicted.split) or set(shares) != {a.placement for a in expected.split}:
        return False
    if not expected.split:
        return True
    if abs(sum(a.share for a in predicted.split) - 100.0) > 0.5:
        return False
    budget = expected.budget
    for want in expected.split:
        got = shares[want.placement]
        if abs(got.share - want.share) > tolerance:
            return False
        if budget is not None and want.dollars is not None:
            if got.dollars is None or abs(got.dollars - want.dollars) > budget * tolerance / 100:
                return False
    return True


def _uplift_within(predicted: Plan, expected: Plan, slack: float) -> bool:
    """The stated uplift inside its own range, and that range inside the priors' interval (both unknown: agrees)."""
    if expected.uplift is None or predicted.uplift is None:
        return expected.uplift is None and predicted.uplift is None
    low, high = expected.uplift_low - slack, expected.uplift_high + slack
    return low <= predicted.uplift_low <= predicted.uplift <= predicted.uplift_high <= high
