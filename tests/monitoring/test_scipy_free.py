"""The daemon's drift statistics against SciPy, which it does not import."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from appliance.monitoring import roc_auc
from appliance.monitoring._special import chi2_sf, kolmogorov, smirnov
from appliance.monitoring._streaming import chi2_independence_p, kstwo_sf


@pytest.mark.parametrize("n", [15, 60, 140, 141, 250, 1000])
def test_kstwo_sf_matches_scipy_below_one_percent(n: int) -> None:
    for statistic in np.linspace(0.01, 0.99, 400):
        expected = stats.kstwo.sf(statistic, n)
        if expected >= 0.01:
            continue
        assert kstwo_sf(statistic, n) == pytest.approx(expected, rel=1e-6, abs=0)


def test_chi2_p_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        table = rng.integers(1, 200, size=(2, int(rng.integers(2, 9)))).astype(float)
        expected = stats.chi2_contingency(table, correction=False)[1]
        assert chi2_independence_p(table) == pytest.approx(expected, rel=1e-12)


def test_roc_auc_matches_rank_formula_with_ties() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 400)
    scores = rng.integers(0, 10, 400) / 10.0
    ranks = stats.rankdata(scores)
    positives = labels.sum()
    expected = (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (
        positives * (labels.size - positives)
    )
    assert roc_auc(labels, scores) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 15, 140, 141, 250, 1000, 20000])
def test_smirnov_matches_scipy(n: int) -> None:
    for statistic in np.linspace(0.001, 0.999, 300):
        expected = special.smirnov(n, statistic)
        assert smirnov(n, statistic) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_smirnov_edges() -> None:
    assert smirnov(10, 0.0) == 1.0
    assert smirnov(10, 1.0) == 0.0
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        smirnov(0, 0.5)


def test_kolmogorov_matches_scipy() -> None:
    for x in np.linspace(0.0, 6.0, 1201):
        expected = special.kolmogorov(x)
        assert kolmogorov(x) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 10, 31, 100, 501])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    for x in [*np.linspace(0.0, 60.0, 241), *np.linspace(60.0, 3000.0, 50)]:
        expected = special.chdtrc(dof, x)
        assert chi2_sf(dof, x) == pytest.approx(expected, rel=1e-11, abs=1e-300)


def test_chi2_sf_dof_zero_rejected() -> None:
    with pytest.raises(ValueError, match="dof must be at least 1, got 0"):
        chi2_sf(0, 1.0)


def test_doctests_of_special_functions() -> None:
    import doctest

    from appliance.monitoring import _special

    result = doctest.testmod(_special)

    assert result.attempted == 3
    assert result.failed == 0
