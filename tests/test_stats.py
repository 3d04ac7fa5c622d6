"""Student-t intervals against closed forms and known limits."""

from __future__ import annotations

import math

import pytest

from reporting.stats import (
    corrected,
    holm,
    incomplete_beta,
    interval,
    median_interval,
    t_cdf,
    t_quantile,
    t_test_p,
    verdict,
)


def test_t_quantiles_match_closed_forms() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)  # Cauchy
    assert t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-9)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)  # the normal limit
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))
    assert t_cdf(t_quantile(0.9, 7), 7) == pytest.approx(0.9, abs=1e-9)


def test_incomplete_beta_special_cases() -> None:
    assert incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)  # uniform
    assert incomplete_beta(2, 1, 0.5) == pytest.approx(0.25)  # x^a
    assert incomplete_beta(0.5, 0.5, 0.5) == pytest.approx(0.5)  # symmetric


def test_interval_mean_std_and_half_width() -> None:
    mean, std, half = interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.02)
    assert half == pytest.approx(t_quantile(0.975, 2) * 0.02 / math.sqrt(3))
    one = interval([0.7])
    assert one[0] == 0.7 and math.isnan(one[1]) and math.isnan(one[2])  # one seed: no spread, no interval


def test_the_verdict_follows_the_interval() -> None:
    assert verdict(3, 0.02, 0.01) == "higher"
    assert verdict(3, -0.02, 0.01) == "lower"
    assert verdict(3, 0.02, 0.03) == "unresolved (the interval contains 0)"
    assert verdict(1, 0.20, float("nan")) == "unresolved (one pair: no interval)"
    assert verdict(0, float("nan"), float("nan")) == "no seed in common"


def test_holm_against_a_hand_worked_example() -> None:
    # m = 4, sorted 0.005, 0.01, 0.03, 0.04: 4 x 0.005 = 0.02; 3 x 0.01 = 0.03; 2 x 0.03 = 0.06;
    # 1 x 0.04 = 0.04, raised to 0.06 (adjusted p never decreases along the order)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a comparison without a test still counts in m: 5 x 0.005, 4 x 0.01, 3 x 0.03, max(2 x 0.04, 0.09)
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.04, 0.09, 0.09, 0.025]) and math.isnan(adjusted[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    assert [corrected(+1.0, p) for p in (0.03, 0.06)] == ["higher", "unresolved"]
    assert corrected(-1.0, 0.02) == "lower" and corrected(-1.0, math.nan) == "unresolved"


def test_the_paired_t_test_agrees_with_the_interval() -> None:
    # df = 2 in closed form: P(|T| > t) = 1 - t / sqrt(t^2 + 2)
    t = 3.0
    assert t_test_p(3, t * 1.0 / math.sqrt(3), 1.0) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    for diffs in ([0.01, 0.03, 0.02], [0.01, -0.03, 0.02, 0.05], [0.02, 0.021, 0.03, -0.001, 0.01]):
        mean, std, half = interval(diffs)
        p = t_test_p(len(diffs), mean, std)
        assert (p < 0.05) == (verdict(len(diffs), mean, half) in ("higher", "lower"))
    assert math.isnan(t_test_p(1, 0.1, math.nan)) and t_test_p(3, 0.1, 0.0) == 0.0


def test_median_interval_is_the_order_statistic_interval() -> None:
    # n = 15: P(Binomial(15, 1/2) < 4) = (1 + 15 + 105 + 455) / 2^15 = 0.0176 <= 0.025 < P(< 5) = 0.0593
    assert median_interval([float(v) for v in range(15, 0, -1)]) == (8.0, 4.0, 12.0, 1 - 2 * 576 / 2**15)
    # n = 6: only the extremes, 1 - 2 / 2^6; n = 5: the extremes fall short of 95%, and say so
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == (3.5, 1.0, 6.0, 1 - 2 / 2**6)
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0])[1:] == (1.0, 5.0, 1 - 2 / 2**5)
    assert median_interval([2.0])[1:] == (2.0, 2.0, 0.0)
    assert all(math.isnan(v) for v in median_interval([]))
