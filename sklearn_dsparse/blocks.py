"""The partition of the parameters into m contiguous blocks.

The parameters are held as a matrix W of shape (n_columns, n_outputs): one row
per feature, plus a last row for the intercepts when they are fitted.  A block
is a contiguous range of those rows, so a block holds the same features for
every output (every class of a multinomial model); the intercept row is the
last feature of the last block.  Block sizes differ by at most one.
"""

import numpy as np


class BlockPartition:
    """m contiguous blocks over ``n_columns`` parameter rows.

    Attributes
    ----------
    starts : ndarray of shape (n_blocks + 1,), int64
        Block b holds rows ``starts[b]:starts[b + 1]``.
    column_block : ndarray of shape (n_columns,), int32
        The block of each parameter row.
    """

    def __init__(self, n_columns, n_blocks):
        if not 1 <= n_blocks <= n_columns:
            raise ValueError(
                f"n_blocks={n_blocks} must be between 1 and the number of "
                f"parameter rows ({n_columns})"
            )
        self.n_columns = int(n_columns)
        self.n_blocks = int(n_blocks)
        base, extra = divmod(self.n_columns, self.n_blocks)
        sizes = np.full(self.n_blocks, base, dtype=np.int64)
        sizes[:extra] += 1
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.column_block = np.repeat(
            np.arange(self.n_blocks, dtype=np.int32), sizes
        )

    @property
    def sizes(self):
        return np.diff(self.starts)

    def __repr__(self):
        return f"BlockPartition(n_columns={self.n_columns}, n_blocks={self.n_blocks})"
