"""Vectors in few bits: codes times one power of two per message.

``solver="newton"`` sends two vectors a round trip, a gradient and a local
direction, each as long as the model.  Both travel as small codes c (int8 or
float16) and one exponent e, ``v ~ c * 2**e``, e chosen so that the largest
|v| fills the codes' range.  A power of two scales exactly, so the master
decodes bit for bit what the worker holds, on every engine.

The rounding loses nothing at the optimum, for different reasons:

- *gradients* travel as the change since the worker's last message (error
  feedback, as in Seide et al., "1-bit SGD", Interspeech 2014, and the
  DIANA family of Mishchenko et al., 2019): the worker and the master both
  add the decoded change to the worker's last sent gradient h_i, so the
  master's sum of the h_i misses each worker's gradient by the rounding of
  one change (2**-11 of each entry with float16 codes, the library's; 1/128
  of the largest with int8); as the iterates converge the changes vanish,
  and so does the error;
- *directions* only precondition: the line search runs on the exact
  objective (its values travel in float64) and the memory of L-BFGS corrects
  the rest.

``benchmarks/study_quantized_messages.py`` measured the formats: see
docs/newton.md, "What travels".
"""

from dataclasses import dataclass

import numpy as np

#: The exponent travels as an int16 before the codes.
EXPONENT_DTYPE = np.dtype("<i2")


@dataclass(frozen=True)
class Quantized:
    """A vector's codes and its exponent: ``codes * 2**exponent``."""

    exponent: int
    codes: np.ndarray

    def as_bytes(self):
        """The exponent and the codes as they travel (nothing for no codes)."""
        if self.codes.size == 0:
            return np.empty(0, dtype=np.uint8)
        return np.concatenate([
            np.array([self.exponent], dtype=EXPONENT_DTYPE).view(np.uint8),
            np.ascontiguousarray(self.codes).view(np.uint8)])


@dataclass(frozen=True)
class PowerOfTwoScaled:
    """Codes of ``code_dtype`` (int8 or float16) times a power of two.

    int8: the largest |v| scaled into [64, 128), rounded to the nearest
    integer in [-127, 127]: every entry within 1/128 of the largest.
    float16: the largest |v| scaled into [2**14, 2**15): every entry within
    2**-11 of itself, down to 2**-29 of the largest (float16's subnormals
    below).
    """

    code_dtype: np.dtype

    @property
    def _top_bit(self):
        # float32 and float64 codes need no scaling: [0.5, 1), for studies
        return {1: 7, 2: 15}.get(self.code_dtype.itemsize, 0)

    def nbytes(self, n_values):
        """The bytes of a message part of ``n_values`` values (none: 0)."""
        if n_values == 0:
            return 0
        return EXPONENT_DTYPE.itemsize + n_values * self.code_dtype.itemsize

    def encode(self, values):
        """``values`` (float64) as a ``Quantized``.  Non-finite values (a
        trial point where the loss overflows, which the line search rejects on
        its objective) are sent as zeros: no change."""
        largest = float(np.max(np.abs(values))) if values.size else 0.0
        if largest == 0.0 or not np.isfinite(largest):
            return Quantized(0, np.zeros(values.shape, dtype=self.code_dtype))
        exponent = int(np.frexp(largest)[1]) - self._top_bit
        scaled = np.ldexp(values, -exponent)
        if self.code_dtype.kind == "i":
            scaled = np.clip(np.rint(scaled), -127, 127)
        return Quantized(exponent, scaled.astype(self.code_dtype))

    def error_bound(self, quantized, decoded=None):
        """A bound on the Euclidean norm of what rounding to ``quantized``
        changed, from the codes alone (the master's view; ``decoded``, its
        values when already decoded); 0 for the zero vector (and for the
        zeros that stand for non-finite values)."""
        n = quantized.codes.size
        if not quantized.codes.any():  # the zero vector: encode scales the rest
            return 0.0
        if self.code_dtype.kind == "i":  # half a unit, a whole one when clipped
            return float(np.ldexp(np.sqrt(n), quantized.exponent))
        eps = float(np.finfo(self.code_dtype).eps)  # 2**-10: twice the rounding
        smallest = float(np.finfo(self.code_dtype).smallest_subnormal)
        with np.errstate(over="ignore"):  # inf where the data overflow the loss
            norm = float(np.linalg.norm(
                self.decode(quantized) if decoded is None else decoded))
        return eps * norm + float(np.ldexp(smallest * np.sqrt(n), quantized.exponent))

    @staticmethod
    def decode(quantized):
        """The float64 values ``quantized`` stands for (exact)."""
        return np.ldexp(quantized.codes.astype(np.float64), quantized.exponent)

    def from_bytes(self, buffer, n_values):
        """The ``Quantized`` of ``n_values`` values at the start of the uint8
        array ``buffer`` (``Quantized.as_bytes``'s layout)."""
        if n_values == 0:
            return Quantized(0, np.empty(0, dtype=self.code_dtype))
        exponent = int(np.frombuffer(buffer[:EXPONENT_DTYPE.itemsize].tobytes(),
                                     dtype=EXPONENT_DTYPE)[0])
        codes = np.frombuffer(
            buffer[EXPONENT_DTYPE.itemsize:self.nbytes(n_values)].tobytes(),
            dtype=self.code_dtype)
        return Quantized(exponent, codes)


INT8 = PowerOfTwoScaled(np.dtype(np.int8))
FLOAT16 = PowerOfTwoScaled(np.dtype(np.float16))
FLOAT32 = PowerOfTwoScaled(np.dtype(np.float32))
FLOAT64 = PowerOfTwoScaled(np.dtype(np.float64))
