"""Student-t intervals against closed forms and known limits."""

from __future__ import annotations

import math

import pytest

from reporting.stats import incomplete_beta, interval, t_cdf, t_quantile, verdict


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
