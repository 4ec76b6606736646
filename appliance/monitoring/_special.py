"""Distribution functions of the streaming drift tests, without SciPy.

``scipy.special`` adds about 13 MB to a process, and the daemon needs only
three of its functions: ``smirnov``, ``kolmogorov`` and ``chdtrc``. These are
closed forms and series of the standard library and numpy, checked against
SciPy 1.17 in the tests.
"""

from __future__ import annotations

import math

import numpy as np


def smirnov(n: int, statistic: float) -> float:
    """Return P(D+ >= statistic) of the one-sided one-sample KS statistic D+.

    Same as ``scipy.special.smirnov(n, statistic)``. The exact finite sum for
    D+ has only positive terms, each computed in log space, so tiny p-values
    keep their relative precision.

    >>> f"{smirnov(250, 0.2):.4e}"
    '1.5293e-09'
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if statistic <= 0.0:
        return 1.0
    if statistic >= 1.0:
        return 0.0
    j = np.arange(0, math.floor(n * (1.0 - statistic)) + 1, dtype=np.float64)
    # log C(n, j), from the ratios C(n, j) / C(n, j - 1) = (n - j + 1) / j.
    log_binomial = np.concatenate([[0.0], np.cumsum(np.log((n - j[1:] + 1.0) / j[1:]))])
    with np.errstate(divide="ignore"):
        log_below = np.log(np.maximum(1.0 - statistic - j / n, 0.0))
    log_above = np.log(statistic + j / n)
    log_terms = log_binomial + (n - j) * log_below + (j - 1.0) * log_above
    return min(statistic * math.fsum(np.exp(log_terms).tolist()), 1.0)


def kolmogorov(x: float) -> float:
    """Return the survival function of the Kolmogorov distribution at `x`.

    Same as ``scipy.special.kolmogorov(x)``, the limit of P(sqrt(n) D >= x).
    Below x = 1 it sums 7 terms of the Jacobi theta form, from x = 1 on 19
    terms of the alternating series. Each term left out is below 1e-100 of
    the sum.

    >>> round(kolmogorov(1.0), 10)
    0.2699996717
    """
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        factor = -(math.pi**2) / (8.0 * x * x)
        terms = [math.exp(factor * (2 * k - 1) ** 2) for k in range(1, 8)]
        return 1.0 - math.sqrt(2.0 * math.pi) / x * math.fsum(terms)
    terms = [(-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 20)]
    return min(2.0 * math.fsum(terms), 1.0)


def chi2_sf(dof: int, x: float) -> float:
    """Return the chi-squared survival function P(X >= x) for integer `dof`.

    Same as ``scipy.special.chdtrc(dof, x)``. For whole degrees of freedom
    the regularized upper incomplete gamma function is a finite sum: Poisson
    terms for even `dof`, ``erfc`` plus half-integer terms for odd `dof`.

    >>> round(chi2_sf(3, 7.815), 6)
    0.049994
    """
    if dof < 1:
        raise ValueError(f"dof must be at least 1, got {dof}")
    if x <= 0.0:
        return 1.0
    half = x / 2.0
    log_half = math.log(half)
    if dof % 2 == 0:
        terms = [
            math.exp(-half + i * log_half - math.lgamma(i + 1.0))
            for i in range(dof // 2)
        ]
        return min(math.fsum(terms), 1.0)
    terms = [
        math.exp(-half + (i - 0.5) * log_half - math.lgamma(i + 0.5))
        for i in range(1, (dof - 1) // 2 + 1)
    ]
    return min(math.erfc(math.sqrt(half)) + math.fsum(terms), 1.0)
