"""lswag.info against distributions whose entropies are known in closed form."""
import itertools
import math

import numpy as np
import pytest

from lswag.errors import LswagError
from lswag.info import bin_count, conditional_entropy, discretise, entropy, information_gain


def binary_entropy(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@pytest.mark.parametrize("n", [2, 7, 100, 725, 1000, 9445])
def test_sturges_matches_numpy_and_suite_zero_matches_its_formula(n):
    values = np.linspace(0.0, 1.0, n)
    assert bin_count(n) == len(np.histogram_bin_edges(values, bins="sturges")) - 1
    assert bin_count(n, "suite_zero") == round(1 + 3.322 * math.log(n))


def test_bin_count_rejects_unknown_rules_and_non_positive_counts():
    with pytest.raises(LswagError, match="sturges, suite_zero"):
        bin_count(10, "scott")
    with pytest.raises(LswagError, match="at least 1"):
        bin_count(10, 0)
    assert bin_count(10, 4) == 4


def test_discretise_splits_the_range_into_equal_widths():
    values = np.array([0.0, 0.24, 0.26, 0.5, 0.74, 0.76, 1.0])
    # 4 bins of width 0.25 over [0, 1]; the maximum belongs to the last bin
    assert discretise(values, 4).tolist() == [0, 0, 1, 2, 2, 3, 3]
    shifted = discretise(values * 7 - 3, 4)  # an affine map of the scores keeps the bins
    assert shifted.tolist() == [0, 0, 1, 2, 2, 3, 3]


def test_discretise_puts_failures_in_a_bin_of_their_own_and_constants_in_one():
    values = [1.0, float("nan"), 3.0, float("-inf"), 2.0]
    bins = discretise(values, 2)
    assert bins.tolist() == [0, 2, 1, 2, 1]
    assert discretise([5.0, 5.0, 5.0], "sturges").tolist() == [0, 0, 0]


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_entropy_of_a_uniform_variable_is_log2_k(k):
    samples = np.repeat(np.arange(k), 3)
    assert entropy(samples) == pytest.approx(math.log2(k), abs=1e-12)


@pytest.mark.parametrize("ones, n", [(1, 4), (3, 10), (37, 100)])
def test_entropy_of_a_bernoulli_sample_is_the_binary_entropy(ones, n):
    samples = np.array([1] * ones + [0] * (n - ones))
    assert entropy(samples) == pytest.approx(binary_entropy(ones / n), abs=1e-12)


def test_equal_width_bins_of_evenly_spread_values_are_uniform():
    k, per_bin = 8, 25
    values = (np.arange(k * per_bin) + 0.5) / (k * per_bin)  # 25 values in each eighth of (0, 1)
    assert entropy(discretise(values, k)) == pytest.approx(3.0)


def test_joint_entropy_of_independent_variables_adds_up():
    a, b = np.array(list(itertools.product(range(4), range(2)))).T  # full factorial: independent
    assert entropy(a, b) == pytest.approx(math.log2(4) + math.log2(2))
    assert conditional_entropy(a, b) == pytest.approx(entropy(a))


def test_conditional_entropy_is_zero_when_the_condition_determines_y():
    z = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    y = z % 2
    assert conditional_entropy(y, z) == 0.0
    assert conditional_entropy(z, y) == pytest.approx(1.0)  # y leaves two equally likely z


def test_information_gain_of_the_missing_half_of_a_parity_is_one_bit():
    a, b = np.array(list(itertools.product([0, 1], repeat=2))).T
    parity = (a + b) % 2
    assert conditional_entropy(parity, a) == pytest.approx(1.0)  # a alone says nothing
    assert information_gain(parity, b, given=[a]) == pytest.approx(1.0)
    assert information_gain(parity, a, given=[a]) == 0.0  # a copy of z1 adds nothing
    assert information_gain(parity, b) == 0.0  # and b alone says nothing either


def test_information_gain_without_condition_is_mutual_information():
    rng = np.random.default_rng(0)
    y, z = rng.integers(0, 3, 200), rng.integers(0, 4, 200)
    mutual = entropy(y) + entropy(z) - entropy(y, z)
    assert information_gain(y, z) == pytest.approx(mutual)


def test_mismatched_lengths_are_refused():
    with pytest.raises(LswagError, match="different lengths"):
        entropy([0, 1, 2], [0, 1])
