"""Intervals for a handful of seeds: Student's t, computed here (no statistics package needed).

``t_quantile(p, df)`` inverts the t distribution's CDF, written with the regularized incomplete beta
function (a continued fraction, Numerical Recipes' ``betacf``); ``interval(values)`` gives the mean,
the sample standard deviation and the half-width of the two-sided 95% confidence interval,
t(0.975, n - 1) s / sqrt(n); one value has no spread and no interval (NaN), never zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on the CDF)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    low, high = -1e4, 1e4
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, sample std, half-width of the two-sided ``level`` t-interval); NaN spread for one value."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): the distribution-free interval for the median from order
    statistics, the k-th smallest and k-th largest value with k the largest for which
    P(Binomial(n, 1/2) < k) <= (1 - level) / 2; ``coverage`` is its exact probability of holding
    the median, at least ``level``. Below 6 values no pair reaches 95%: the interval is then
    [min, max], and ``coverage`` (1 - 2^(1-n)) says how much less it is. NaN for no values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    ordered = sorted(values)
    middle = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2

    def below(k: int) -> float:  # P(Binomial(n, 1/2) < k)
        return sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k < (n + 1) // 2 and below(k + 1) <= (1 - level) / 2:
        k += 1
    return middle, ordered[k - 1], ordered[n - k], 1 - 2 * below(k)


def verdict(pairs: int, mean: float, ci: float) -> str:
    """A paired difference's verdict: "higher" / "lower" only where its interval excludes 0; else
    "unresolved" and why."""
    if pairs == 0:
        return "no seed in common"
    if pairs == 1 or math.isnan(ci):
        return "unresolved (one pair: no interval)"
    if mean - ci > 0:
        return "higher"
    if mean + ci < 0:
        return "lower"
    return "unresolved (the interval contains 0)"


def t_test_p(pairs: int, mean: float, std: float) -> float:
    """The two-sided p-value of a paired t-test that the mean difference is 0 (``pairs`` differences
    with this mean and sample std); NaN below two pairs. A zero spread gives 0 (or 1 at a zero mean)."""
    if pairs < 2 or math.isnan(mean) or math.isnan(std):
        return math.nan
    if std == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = abs(mean) / (std / math.sqrt(pairs))
    return min(1.0, 2.0 * (1.0 - t_cdf(t, pairs - 1)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979), in the given order: the k-th
    smallest of m becomes max over j <= k of min(1, (m - j + 1) p_(j)); a comparison survives the
    family-wise correction at level alpha where its adjusted p is <= alpha. A NaN p (no test) is
    counted in m and stays NaN: it can never be rejected, but the family is not made smaller by it."""
    m = len(pvalues)
    order = sorted((i for i in range(m) if not math.isnan(pvalues[i])), key=lambda i: pvalues[i])
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def corrected(mean: float, adjusted_p: float, alpha: float = 0.05) -> str:
    """The verdict after the family-wise correction: "higher" / "lower" only where the Holm-adjusted
    p is at most ``alpha``, else "unresolved"."""
    if math.isnan(adjusted_p) or adjusted_p > alpha:
        return "unresolved"
    return "higher" if mean > 0 else "lower"
