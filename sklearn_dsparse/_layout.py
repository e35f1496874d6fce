"""How the compiled kernels see the (n_rows, n_outputs) arrays of a fit.

With one output (binary logistic regression, a single regression target) the
engines hand the kernels 1-D views of their arrays instead of (n, 1) ones.
Numba then compiles a specialisation in which ``n_outputs`` is the constant 1,
and the loops over outputs vanish: with a run-time count of one they cost a
third of a SAGA epoch on news20.  The kernels index every array flat, element
(j, k) at ``j * n_outputs + k``, which is the same memory in both layouts.
"""

from numba.extending import overload


def n_outputs(A):
    """Number of outputs of a kernel array: 1 for a 1-D array, else its last axis."""
    return 1 if A.ndim == 1 else A.shape[-1]


@overload(n_outputs, inline="always")
def _n_outputs(A):
    if A.ndim == 1:
        return lambda A: 1  # a compile-time constant in the kernels
    return lambda A: A.shape[A.ndim - 1]


def kernel_view(A):
    """A view of ``A`` without its last axis when that axis has length one."""
    return A.reshape(A.shape[:-1]) if A.shape[-1] == 1 else A
