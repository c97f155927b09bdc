"""The compute-optimal phase table of :mod:`lmech.theory.scaling` against Paquette, Paquette, Xiao & Pennington
2024 (arXiv 2405.15074), written in the paper's own variables.

The paper's power-law random features: data eigenvalues j^(−2α), target coefficients j^(−β), d parameters, r
steps, f = d·r flops. Its phases above the high-dimensional line (2α > 1) and its compute-optimal curves:

* Phase Ia, 2β < 1: the trade-off F_pp = F_0, d* ≍ f^(1/(2α+1)), loss ≍ f^(−(2α+2β−1)/(2α+1));
* Phase II, 2β > 1 and β < α: F_pp = F_ac, d* ≍ f^(β/(α+β)), loss ≍ f^(−(2α+2β−1)/(2(α+β)));
* Phase III, β > α: K_pp = F_ac, d* ≍ f^(1/2) (the paper's "universal" allocation), loss ≍ f^((1−4α)/(4α)).

These are the paper's statements, re-derived here from its forcing and kernel asymptotics F_pp ≍ r^(−(2α+2β−1)/(2α)),
F_ac ≍ d^(−1) r^(−1+1/(2α)), F_0 ≍ d^(−2α + max(0, 1−2β)), K_pp ≍ r^(−2+1/(2α)) by balancing the two terms
named in each row at d·r = f. The dictionary (module docstring of :mod:`lmech.theory.scaling`) is b = 2α and
a = 2α + 2β; the test converts (a, b) to (α, β) and compares every entry at several points per phase, away from
the boundaries. A disagreement in any formula or in the dictionary fails it (exact arithmetic: rel 1e-12).
"""

from __future__ import annotations

import pytest

from lmech.theory import scaling as S


def paper_variables(a: float, b: float) -> tuple[float, float]:
    """(α, β) of Paquette et al. from this module's (a, b): λ_j = j^−2α = j^−b and λ_j b_j² = j^−(2α+2β) = j^−a."""
    return b / 2, (a - b) / 2


def paper_phase(alpha: float, beta: float) -> str:
    """The paper's phase of (α, β) above the high-dimensional line 2α > 1 (Ia: 2β < 1; II: 2β > 1, β < α;
    III: β > α)."""
    assert 2 * alpha > 1
    if 2 * beta < 1:
        return "Ia"
    return "II" if beta < alpha else "III"


def paper_row(alpha: float, beta: float) -> tuple[float, float]:
    """(loss exponent, d* exponent) of the paper's compute-optimal curve: loss ≍ f^−x, d* ≍ f^y."""
    ph = paper_phase(alpha, beta)
    if ph == "Ia":
        return (2 * alpha + 2 * beta - 1) / (2 * alpha + 1), 1 / (2 * alpha + 1)
    if ph == "II":
        return (2 * alpha + 2 * beta - 1) / (2 * (alpha + beta)), beta / (alpha + beta)
    return (4 * alpha - 1) / (4 * alpha), 0.5


def balanced(alpha: float, beta: float) -> tuple[float, float]:
    """The same row by balancing the paper's two named terms at d·r = f (independent of ``paper_row``'s algebra):
    term_1 = d^p1 r^q1, term_2 = d^p2 r^q2 equal at d = r^k, k = (q2 − q1)/(p1 − p2); then d* = f^(k/(1+k)) and the
    loss r^(q1)·d^(p1) along it."""
    fpp = (0.0, -(2 * alpha + 2 * beta - 1) / (2 * alpha))
    fac = (-1.0, -1 + 1 / (2 * alpha))
    f0 = (-2 * alpha + max(0.0, 1 - 2 * beta), 0.0)
    kpp = (0.0, -2 + 1 / (2 * alpha))
    one, two = {"Ia": (fpp, f0), "II": (fpp, fac), "III": (kpp, fac)}[paper_phase(alpha, beta)]
    k = (two[1] - one[1]) / (one[0] - two[0])
    y = k / (1 + k)  # d = r^k, f = r^(1+k)
    return -(one[0] * y + one[1] * (1 - y)), y


POINTS = {  # (a, b), several per phase, each at least 0.3 from a boundary
    "Ia": [(1.5, 2.0), (2.5, 3.0), (2.5, 2.0), (3.0, 4.0), (1.8, 1.5)],
    "II": [(4.6, 3.0), (6.0, 4.0), (5.5, 3.5), (3.5, 2.0), (7.0, 4.5)],
    "III": [(9.0, 3.0), (6.0, 2.0), (5.0, 1.5), (10.0, 4.0), (4.0, 1.6)],
}


@pytest.mark.parametrize("name,a,b", [(n, a, b) for n, pts in POINTS.items() for a, b in pts])
def test_phase_table_matches_the_paper(name, a, b):
    alpha, beta = paper_variables(a, b)
    assert paper_phase(alpha, beta) == name
    ex = S.exponents(a, b)
    assert ex.phase.name == name and ex.phase.boundary is None
    x, y = paper_row(alpha, beta)
    assert ex.compute_loss == pytest.approx(x, rel=1e-12)
    assert ex.compute_model == pytest.approx(y, rel=1e-12)
    assert ex.compute_steps == pytest.approx(1 - y, rel=1e-12)
    assert ex.compute_ratio == pytest.approx(1 - 2 * y, abs=1e-12)
    assert (x, y) == pytest.approx(balanced(alpha, beta), rel=1e-12)


@pytest.mark.parametrize("a,b", [pt for pts in POINTS.values() for pt in pts])
def test_single_resource_exponents_match_the_papers_terms(a, b):
    """The time exponent is F_pp's, (2α+2β−1)/(2α); the model-size exponent F_0's, 2α − max(0, 1 − 2β); SGD's
    time exponent in phase III K_pp's, 2 − 1/(2α)."""
    alpha, beta = paper_variables(a, b)
    ex = S.exponents(a, b)
    assert ex.time == pytest.approx((2 * alpha + 2 * beta - 1) / (2 * alpha), rel=1e-12)
    assert ex.model == pytest.approx(2 * alpha - max(0.0, 1 - 2 * beta), rel=1e-12)
    if ex.phase.name == "III":
        assert ex.sgd_time == pytest.approx(2 - 1 / (2 * alpha), rel=1e-12)


def test_the_phase_boundaries_are_the_papers_lines():
    """Ia/II on 2β = 1 (a − 1 = b), II/III on β = α (a = 2b): flagged within the margin on both sides."""
    for a, b in ((4.0, 3.0), (4.05, 3.0), (6.0, 3.0), (5.95, 3.0)):
        alpha, beta = paper_variables(a, b)
        assert min(abs(2 * beta - 1), abs(beta - alpha)) <= S.BOUNDARY_MARGIN
        assert S.phase(a, b).boundary is not None
