"""Tests of lswag.stats: rank correlations, failures ranked last, bootstrap intervals."""
import math
import warnings

import numpy as np
import pytest
import scipy.stats

from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.stats import Correlation, correlate, failures_last


def _data(n, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


# --- point estimates against scipy -------------------------------------------------------------

def test_point_estimates_equal_scipy_on_random_data():
    x, y = _data(200, seed=3)
    c = correlate(x, y, n_boot=0)
    assert isinstance(c, Correlation)
    assert c.n == 200 and c.failures == 0
    assert c.spearman == scipy.stats.spearmanr(x, y).statistic
    assert c.kendall == scipy.stats.kendalltau(x, y).statistic


def test_point_estimates_equal_scipy_with_ties():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 5, size=150).astype(float)
    y = np.round(x + rng.normal(size=150), 0)
    c = correlate(list(x), list(y), n_boot=0)
    assert c.spearman == scipy.stats.spearmanr(x, y).statistic
    assert c.kendall == scipy.stats.kendalltau(x, y).statistic  # tau-b


def test_monotone_and_reversed_proxy():
    truth = np.linspace(0.5, 0.9, 40)
    up = correlate(np.exp(truth * 10), truth, n_boot=50)
    down = correlate(-truth ** 3, truth, n_boot=50)
    assert up.spearman == pytest.approx(1.0) and up.kendall == pytest.approx(1.0)
    assert down.spearman == pytest.approx(-1.0) and down.kendall == pytest.approx(-1.0)
    assert up.spearman_ci == pytest.approx((1.0, 1.0))
    assert down.kendall_ci == pytest.approx((-1.0, -1.0))


# --- failures rank last ------------------------------------------------------------------------

def test_failures_last_maps_every_failure_to_minus_inf():
    out = failures_last([1.0, None, math.nan, math.inf, -math.inf, Failure("x"), "3", 2, True,
                         np.float32(0.5), 1 + 2j])
    expected = [1.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, 2.0, 1.0, 0.5, -np.inf]
    assert out.dtype == float
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(failures_last(np.array([1.0, np.nan, -np.inf])),
                                  [1.0, -np.inf, -np.inf])


def test_failures_rank_like_a_sentinel_below_every_score():
    x, y = _data(60, seed=11)
    scores = list(x)
    sentinel = x.copy()
    for i, bad in zip((2, 9, 17, 30, 41), (None, math.nan, Failure("x"), math.inf, Failure("y"))):
        scores[i] = bad
        sentinel[i] = -1e8
    c = correlate(scores, y, n_boot=100, seed=4)
    s = correlate(sentinel, y, n_boot=100, seed=4)
    assert c.failures == 5 and s.failures == 0
    assert c.spearman == pytest.approx(scipy.stats.spearmanr(sentinel, y).statistic, abs=1e-15)
    assert c.kendall == pytest.approx(scipy.stats.kendalltau(sentinel, y).statistic, abs=1e-15)
    assert c.spearman_ci == pytest.approx(s.spearman_ci, abs=1e-12)
    assert c.kendall_ci == pytest.approx(s.kendall_ci, abs=1e-12)


def test_all_failures_give_nan():
    c = correlate([None, Failure("a"), math.nan, None], [1.0, 2.0, 3.0, 4.0], n_boot=20)
    assert c.failures == 4
    assert math.isnan(c.spearman) and math.isnan(c.kendall)
    assert all(math.isnan(v) for v in c.spearman_ci + c.kendall_ci)


def test_a_constant_pool_is_noted_with_why():
    truth = [1.0, 2.0, 3.0, 4.0]
    c = correlate([16] * 4, truth, n_boot=20)
    assert math.isnan(c.spearman) and c.note == "constant: 16 for all 4"
    assert correlate([16, Failure("x"), 16.0, None], truth, n_boot=0).note == "constant: 16 for 2, 2 failed"
    assert correlate([None, Failure("a"), math.nan, None], truth, n_boot=0).note == "all 4 failed"
    assert correlate([3, 1, 2, 4], [93.5] * 4, n_boot=0).note == "target constant: 93.5 for all 4"
    assert correlate([3, 1, 2, 4], truth, n_boot=0).note is None
    assert correlate([3, 1, Failure("x"), 4], truth, n_boot=0).note is None   # failures alone are no constant


# --- bootstrap ---------------------------------------------------------------------------------

def test_interval_contains_estimate_and_is_deterministic():
    x, y = _data(300, noise=0.5, seed=5)
    a = correlate(x, y, n_boot=300, seed=9)
    b = correlate(x, y, n_boot=300, seed=9)
    assert a == b
    assert a.spearman_ci[0] < a.spearman < a.spearman_ci[1]
    assert a.kendall_ci[0] < a.kendall < a.kendall_ci[1]
    assert a.spearman > 0.8
    other = correlate(x, y, n_boot=300, seed=10)
    assert other.spearman_ci != a.spearman_ci


def test_interval_narrows_with_n():
    small = correlate(*_data(50, seed=21), n_boot=300)
    large = correlate(*_data(2000, seed=21), n_boot=300)
    for name in ("spearman_ci", "kendall_ci"):
        lo_s, hi_s = getattr(small, name)
        lo_l, hi_l = getattr(large, name)
        assert hi_l - lo_l < 0.5 * (hi_s - lo_s)


def test_matches_an_independent_loop_bootstrap():
    x, y = _data(30, noise=1.0, seed=13)
    y[::7] = y[0]  # some ties in the truth
    n_boot, confidence, seed = 200, 0.9, 17
    c = correlate(x, y, n_boot=n_boot, confidence=confidence, seed=seed)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    rhos, taus = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in idx:
            xs = [x[i] for i in row]
            ys = [y[i] for i in row]
            rho = scipy.stats.spearmanr(xs, ys).statistic
            tau = scipy.stats.kendalltau(xs, ys).statistic
            if not math.isnan(rho):
                rhos.append(rho)
            if not math.isnan(tau):
                taus.append(tau)
    q = [50 * (1 - confidence), 50 * (1 + confidence)]
    assert c.spearman_ci == pytest.approx(tuple(np.percentile(rhos, q)), abs=1e-12)
    assert c.kendall_ci == pytest.approx(tuple(np.percentile(taus, q)), abs=1e-12)


def test_degenerate_resamples_are_dropped():
    # 3 architectures: many resamples repeat one architecture (constant) and give NaN
    c = correlate([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], n_boot=200)
    assert c.spearman == pytest.approx(1.0)
    assert c.spearman_ci == pytest.approx((1.0, 1.0))
    assert c.kendall_ci == pytest.approx((1.0, 1.0))


def test_coverage_is_sane():
    # a 90% interval for rho should cover the population rho in most repetitions
    rng = np.random.default_rng(0)
    big_x = rng.normal(size=200_000)
    big_y = big_x + rng.normal(size=200_000)
    true_rho = scipy.stats.spearmanr(big_x, big_y).statistic
    covered = 0
    for rep in range(40):
        x, y = _data(80, seed=100 + rep)
        lo, hi = correlate(x, y, n_boot=200, confidence=0.9, seed=rep).spearman_ci
        covered += lo <= true_rho <= hi
    assert covered >= 28  # ~36 expected; generous for bootstrap under-coverage


# --- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "scores, truth, kwargs, match",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "must match"),
        ([1.0, 2.0], [1.0, 2.0], {}, "at least 3"),
        ([], [], {}, "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, math.nan, 3.0], {}, "non-finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, math.inf], {}, "non-finite"),
        ([1.0, 2.0, 3.0], [1.0, None, 3.0], {}, "non-finite"),
        ([1.0, 2.0, 3.0], ["a", "b", "c"], {}, "real numbers"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"n_boot": -1}, "n_boot"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"confidence": 1.0}, "confidence"),
    ],
)
def test_validation_errors_are_one_line(scores, truth, kwargs, match):
    with pytest.raises(LswagError, match=match) as info:
        correlate(scores, truth, **kwargs)
    assert "\n" not in str(info.value)
