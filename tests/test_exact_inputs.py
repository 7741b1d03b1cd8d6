"""Inputs that used to be taken for something else are refused, by name."""

import numpy as np
import pytest
import torch

from refmoo import Partition
from refmoo.partitions import PartitionError


@pytest.mark.parametrize("mask", [torch.tensor([True, False]), [True, False],
                                  np.array([True, False])], ids=["tensor", "list", "numpy"])
def test_a_boolean_mask_is_not_read_as_indices(mask):
    # as_tensor(mask, dtype=long) is [1, 0]: the mask would become a bucket of both columns.
    with pytest.raises(PartitionError, match="bucket 0 is a boolean mask"):
        Partition([mask])


def test_index_buckets_still_work():
    assert Partition([torch.tensor([1]), [0]]).bucket_of.tolist() == [1, 0]
    assert Partition([np.array([0, 2]), range(1, 2)]).sizes == [2, 1]
