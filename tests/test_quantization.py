"""Vectors in few bits (``quantization``): what a code stands for, its
rounding and its bound, the bytes on the wire, and error feedback."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from sklearn_dsparse.quantization import FLOAT16, FLOAT32, INT8, Quantized


def wide_vector(seed, n=2000):
    """Signs and magnitudes over 12 decades, some zeros: a sparse gradient."""
    rng = np.random.default_rng(seed)
    v = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-10, 2, n)
    v[rng.random(n) < 0.1] = 0.0
    return v


@pytest.mark.parametrize("fmt", [INT8, FLOAT16, FLOAT32])
def test_decode_is_the_codes_times_a_power_of_two_and_travels_exactly(fmt):
    v = wide_vector(0)
    q = fmt.encode(v)
    assert q.codes.dtype == fmt.code_dtype
    assert_array_equal(fmt.decode(q), q.codes.astype(np.float64) * 2.0 ** q.exponent)
    wire = q.as_bytes()
    assert wire.nbytes == fmt.nbytes(v.size) == 2 + v.size * fmt.code_dtype.itemsize
    back = fmt.from_bytes(wire, v.size)
    assert back.exponent == q.exponent
    assert_array_equal(back.codes, q.codes)


def test_float16_codes_keep_eleven_bits_of_every_entry_above_their_floor():
    v = wide_vector(1)
    q = FLOAT16.encode(v)
    err = np.abs(FLOAT16.decode(q) - v)
    largest = np.max(np.abs(v))
    normal = np.abs(v) >= largest * 2.0 ** -28
    assert np.all(err[normal] <= 2.0 ** -11 * np.abs(v[normal]))
    # below float16's normals, an absolute error of half its smallest step
    assert np.all(err[~normal] <= largest * 2.0 ** -39)
    # the largest entry fills the codes' range without overflowing
    assert 2.0 ** 14 <= np.max(np.abs(q.codes.astype(np.float64))) <= 2.0 ** 15


def test_int8_codes_are_within_a_128th_of_the_largest_entry():
    v = wide_vector(2)
    q = INT8.encode(v)
    err = np.abs(INT8.decode(q) - v)
    assert np.max(err) <= np.max(np.abs(v)) / 128
    assert np.max(np.abs(q.codes.astype(int))) <= 127


@pytest.mark.parametrize("fmt", [INT8, FLOAT16])
@pytest.mark.parametrize("seed", range(5))
def test_error_bound_holds_and_is_tight_to_a_small_factor(fmt, seed):
    v = wide_vector(seed) * 10.0 ** (seed - 2)
    q = fmt.encode(v)
    err = np.linalg.norm(fmt.decode(q) - v)
    assert 0 < err <= fmt.error_bound(q) <= 100 * err


@pytest.mark.parametrize("fmt", [INT8, FLOAT16])
def test_zero_and_non_finite_vectors_send_no_change(fmt):
    # (a non-finite gradient is a trial point where the loss overflowed,
    # which the line search rejects on its objective)
    for v in (np.zeros(5), np.array([1.0, np.inf, 2.0]), np.array([np.nan, 1.0])):
        q = fmt.encode(v)
        assert_array_equal(fmt.decode(q), np.zeros(v.size))
        assert fmt.error_bound(q) == 0.0
    assert fmt.nbytes(0) == 0
    empty = Quantized(0, np.empty(0, dtype=fmt.code_dtype))
    assert empty.as_bytes().nbytes == 0
    assert fmt.from_bytes(empty.as_bytes(), 0).codes.size == 0


@pytest.mark.parametrize("fmt, rate", [(INT8, 2.0 ** -6), (FLOAT16, 2.0 ** -10)])
def test_error_feedback_converges_to_the_vector(fmt, rate):
    # Sending the change of a fixed vector since the last message, as the
    # newton workers send their gradients: what the receiver holds closes in
    # by the codes' precision each round, to float64's rounding.
    g = wide_vector(3)
    held = np.zeros_like(g)
    errors = []
    for _ in range(8):
        held += fmt.decode(fmt.encode(g - held))
        errors.append(np.max(np.abs(g - held)))
    assert errors[0] <= rate * np.max(np.abs(g))
    for before, after in zip(errors[:3], errors[1:4]):
        assert after <= rate * before
    assert errors[-1] <= 1e-15 * np.max(np.abs(g))
