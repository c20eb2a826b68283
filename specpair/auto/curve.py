"""The target's verify cost per batch size, learned online (`CostCurve`).

A point is the seconds to evaluate a batch of n tokens (the pending token plus n - 1 drafts), for
n = 1..CURVE_POINTS. It starts from what the cost cache holds and moves toward what decode
rounds measure. Unmeasured points are estimated from measured ones. Two rules keep a curve
measured on a busy machine from sticking:
- physics: a batch of n tokens never costs more than n single steps (plus a margin: timing
  noise), so a point above that is contention, not cost, and is ignored;
- monotonicity with slack: a batch costs at least MONOTONE_SLACK of any smaller batch;
and a point stored by an earlier run is not taken on trust for ever:
- other work on the machine only ever makes a batch slower, so a first measurement this run
  below the stored value replaces it (one busy round stored by an earlier run is forgotten at
  once), where one above it is averaged in;
- a stored point above the straight line through the two measured points below it (by
  DOUBT_MARGIN) is `doubtful`: on a CPU a batch's cost per token falls with its size, so such a
  point is more likely a busy round than the machine. The optimistic curve auto explores against
  leaves it out, so auto drafts at that size once and measures it again, instead of that one
  point capping K until the next version.
`estimate` runs every round: it is one pass over the points, and kept until a point changes.
"""

from __future__ import annotations

from collections.abc import Sequence

CURVE_POINTS = 65  # batches of 1..65 tokens: K up to 64 (long copied spans need long drafts)
PHYSICS_MARGIN = 0.25  # a batch of n may cost up to n * (1 + margin) single steps
MONOTONE_SLACK = 0.9
MIN_SLOPE = 0.02  # extrapolation adds at least this many single steps per extra token
DOUBT_MARGIN = 0.1  # a stored point this far above the line through the two below is doubtful


def prior_ratio(n: int) -> float:
    """Without a measurement of batch size n nor of any larger one, assume it costs this many
    single steps: the shape of the 2-core CPU curves in docs/MEASUREMENTS.md (1.6x at 2, 3.0x at
    5, 6.5x at 9), pessimistic for GPUs, where the first rounds measure the flatter curve."""
    return 1.0 + 0.5 * (n - 1)


def plausible(n: int, seconds: float, single: float | None) -> bool:
    """Whether a batch of n costing `seconds` is physically possible given one token's cost."""
    if not seconds > 0:
        return False
    return single is None or n == 1 or seconds <= n * single * (1 + PHYSICS_MARGIN)


class CostCurve:
    """Starts from a stored curve (or nothing: the first round measures one token) and moves
    each point toward what decode rounds measure: an exponential average whose weight is
    1/count at first (a plain mean) and never below MIN_WEIGHT (it follows drift). A stored
    point counts as one observation."""

    MIN_WEIGHT = 0.1

    def __init__(self, stored: Sequence[float | None] | None = None, *,
                 points: int = CURVE_POINTS) -> None:
        self.points = points
        self.seconds: list[float | None] = [None] * points
        self.counts = [0] * points  # observations this session
        self._sums = [0.0] * points  # their total, for what this session measured
        values = list(stored or [])[:points]
        single = values[0] if values and isinstance(values[0], (int, float)) else None
        for i, s in enumerate(values):
            if isinstance(s, (int, float)) and plausible(i + 1, float(s), single):
                self.seconds[i] = float(s)
        self.stored = self.seconds[0] is not None
        self.dropped = sum(1 for i, s in enumerate(values) if isinstance(s, (int, float))
                           and self.seconds[i] is None)
        self._from_store = [s is not None for s in self.seconds]
        self._estimate: tuple[float, ...] | None = None

    def observe(self, n: int, seconds: float) -> None:
        if not 1 <= n <= self.points or not plausible(n, seconds, self.seconds[0]):
            return
        i = n - 1
        self.counts[i] += 1
        self._sums[i] += seconds
        old = self.seconds[i]
        self._estimate = None
        if old is None or (self.counts[i] == 1 and self._from_store[i] and seconds < old):
            self.seconds[i] = seconds  # contention only slows a batch: the lower one is it
        else:
            start = 2 if self.stored else 1  # a stored value weighs as one observation
            w = max(1.0 / (self.counts[i] + start - 1), self.MIN_WEIGHT)
            self.seconds[i] = old + w * (seconds - old)

    @property
    def known(self) -> bool:
        return self.seconds[0] is not None

    def session(self) -> list[float | None]:
        """This run's own measurements (means), None where it measured nothing: what the cost
        cache stores as one run (the cache takes medians across runs)."""
        out = [s / c if c else None for s, c in zip(self._sums, self.counts)]
        while out and out[-1] is None:
            out.pop()
        return out

    def doubtful(self, n: int) -> bool:
        """Whether batch size n's cost is a stored one, not measured this run, that lies above
        the line through the two measured points below it by more than DOUBT_MARGIN."""
        i = n - 1
        if not (0 <= i < self.points and self._from_store[i] and not self.counts[i]):
            return False
        below = [(m + 1, s) for m, s in enumerate(self.seconds[:i]) if s is not None][-2:]
        if len(below) < 2:
            return False
        (m0, s0), (m1, s1) = below
        line = s1 + (s1 - s0) / (m1 - m0) * (n - m1)
        return self.seconds[i] > line * (1 + DOUBT_MARGIN)  # type: ignore[operator]

    def optimistic(self) -> tuple[float, ...]:
        """The curve if batches larger than any ever measured were nearly free (flat past the
        largest measured batch, as on a GPU), and without its doubtful points: the bound auto
        explores against, never the estimate it decides with."""
        doubtful = [n for n in self.measured() if self.doubtful(n)]
        if doubtful:
            trusted = CostCurve(points=self.points)
            trusted.seconds = [None if i + 1 in doubtful else s
                               for i, s in enumerate(self.seconds)]
            return trusted.optimistic()
        out = list(self.estimate())
        top = max([*self.measured(), 1])
        single = self.seconds[0] or 1.0
        for n in range(top + 1, self.points + 1):
            out[n - 1] = min(out[n - 1], out[top - 1] + MIN_SLOPE * single * (n - top))
        return tuple(out)

    def estimate(self) -> tuple[float, ...]:
        """Seconds for batches of 1..points. Between measured points: linear. Above the
        largest: its per-token slope from the two largest measured points (at least
        MIN_SLOPE single steps a token), or the prior's shape when only one token is
        measured. The slope is the average one, from one token to the largest measured batch:
        the last two points alone can be noise (4.3 then 4.1 single steps at 5 and 6 tokens
        once extrapolated to 17 tokens at 4.3, where they cost 11). Then monotone with
        slack: timings on a busy 2-core machine are noisy, and a
        batch of 4 that once measured cheaper than a batch of 3 must not talk auto into
        drafting. (Real dips, like llama.cpp's 16 against 12, are smaller than that slack.)
        One pass over the points, kept until one changes (this runs every round)."""
        if self._estimate is None:
            self._estimate = self._compute()
        return self._estimate

    def _compute(self) -> tuple[float, ...]:
        if self.seconds[0] is None:
            return tuple(prior_ratio(n) for n in range(1, self.points + 1))  # in units of one
        single = self.seconds[0]
        known = [(i + 1, s) for i, s in enumerate(self.seconds) if s is not None]
        last_m, last_s = known[-1]
        slope = max((last_s - single) / (last_m - 1), MIN_SLOPE * single) \
            if len(known) >= 2 else None
        out: list[float] = []
        top = 0.0  # the largest value so far
        j = 0  # known[j] is the largest measured point <= n
        for n in range(1, self.points + 1):
            while j + 1 < len(known) and known[j + 1][0] <= n:
                j += 1
            m0, s0 = known[j]
            if m0 == n:
                value = s0
            elif j + 1 < len(known):
                m1, s1 = known[j + 1]
                value = s0 + (s1 - s0) * (n - m0) / (m1 - m0)
            elif slope is not None:
                value = last_s + slope * (n - last_m)
            else:
                value = single * prior_ratio(n)
            value = max(value, MONOTONE_SLACK * top)
            top = max(top, value)
            out.append(value)
        return tuple(out)

    def at(self, n: int) -> float:
        """The estimate for a batch of n rows, also past the curve's last point (its last
        slope, at least MIN_SLOPE single steps a row): a batch of several requests' rounds
        and prompt chunks may be larger than any single round."""
        est = self.estimate()
        if n <= self.points:
            return est[max(n, 1) - 1]
        slope = max(est[-1] - est[-2], MIN_SLOPE * est[0])
        return est[-1] + slope * (n - self.points)

    def measured(self) -> dict[int, float]:
        """{batch size: seconds} for every point measured, in this run or by earlier ones (a
        median of runs, within the physics bound)."""
        return {i + 1: s for i, s in enumerate(self.seconds) if s is not None}
