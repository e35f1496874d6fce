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


# Element (j, k) of a kernel array, and a flat view of it, without
# ``reshape``: numba's reshape is a call into its runtime (about 90 ns), which
# per row was a third of a binary SAGA epoch.  Each compiles to plain indexing.

def at(A, j, k):
    """Element (j, k): ``A[j]`` for a 1-D array, else ``A[j, k]``."""
    return A[j] if A.ndim == 1 else A[j, k]


def set_at(A, j, k, value):
    if A.ndim == 1:
        A[j] = value
    else:
        A[j, k] = value


def add_at(A, j, k, value):
    if A.ndim == 1:
        A[j] += value
    else:
        A[j, k] += value


def flat(A):
    """A 1-D view of a C-contiguous kernel array (``A`` itself when 1-D)."""
    return A if A.ndim == 1 else A.reshape(-1)


@overload(at, inline="always")
def _at(A, j, k):
    if A.ndim == 1:
        return lambda A, j, k: A[j]
    return lambda A, j, k: A[j, k]


@overload(set_at, inline="always")
def _set_at(A, j, k, value):
    if A.ndim == 1:
        def set_1d(A, j, k, value):
            A[j] = value
        return set_1d

    def set_2d(A, j, k, value):
        A[j, k] = value
    return set_2d


@overload(add_at, inline="always")
def _add_at(A, j, k, value):
    if A.ndim == 1:
        def add_1d(A, j, k, value):
            A[j] += value
        return add_1d

    def add_2d(A, j, k, value):
        A[j, k] += value
    return add_2d


@overload(flat, inline="always")
def _flat(A):
    if A.ndim == 1:
        return lambda A: A
    return lambda A: A.reshape(-1)
