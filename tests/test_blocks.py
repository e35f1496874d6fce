import numpy as np
import pytest

from sklearn_dsparse.blocks import BlockPartition
from sklearn_dsparse.penalties import ElasticNetPenalty, soft_threshold


@pytest.mark.parametrize("n_columns, n_blocks", [(1, 1), (10, 3), (124, 64), (7, 7)])
def test_blocks_are_contiguous_and_near_equal(n_columns, n_blocks):
    part = BlockPartition(n_columns, n_blocks)
    assert part.starts[0] == 0 and part.starts[-1] == n_columns
    assert np.all(np.diff(part.starts) >= 1)
    assert part.sizes.max() - part.sizes.min() <= 1
    for b in range(n_blocks):
        assert np.all(part.column_block[part.starts[b]:part.starts[b + 1]] == b)


@pytest.mark.parametrize("n_blocks", [0, 11])
def test_impossible_partitions_are_refused(n_blocks):
    with pytest.raises(ValueError, match="n_blocks"):
        BlockPartition(10, n_blocks)


def test_penalty_value_and_prox():
    coef = np.array([[1.0, -2.0], [0.5, 0.0]])
    pen = ElasticNetPenalty(l2=0.4, l1=0.3)
    assert pen.value(coef) == pytest.approx(0.2 * 5.25 + 0.3 * 3.5)
    assert soft_threshold(1.0, 0.3) == pytest.approx(0.7)
    assert soft_threshold(-1.0, 0.3) == pytest.approx(-0.7)
    assert soft_threshold(0.2, 0.3) == 0.0
    with pytest.raises(ValueError, match="l1"):
        ElasticNetPenalty(l1=-1)
