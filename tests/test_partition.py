import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refmoo import Partition, PartitionError
from refmoo.testing import partitions


@given(st.integers(1, 40).flatmap(lambda d: partitions(d)))
def test_generated_partitions_cover_every_index_once(p):
    counts = torch.bincount(p.order, minlength=p.dim)
    assert bool((counts == 1).all())
    assert all(s > 0 for s in p.sizes)
    for b, idx in enumerate(p):
        assert bool((p.bucket_of[idx] == b).all())


def test_from_sizes_is_contiguous():
    p = Partition.from_sizes([3, 1, 2])
    assert p.is_contiguous and p.dim == 6
    assert [idx.tolist() for idx in p] == [[0, 1, 2], [3], [4, 5]]


def test_chunks_keep_the_remainder_last():
    assert Partition.chunks(10, 4).sizes == [4, 4, 2]
    assert Partition.chunks(8, 4).sizes == [4, 4]


def test_single_and_singletons_are_the_extremes():
    assert Partition.singletons(5).refines(Partition.single(5))
    assert not Partition.single(5).refines(Partition.singletons(5))


def test_refines_detects_split_buckets():
    coarse = Partition.from_sizes([2, 2])
    assert Partition.from_sizes([1, 1, 2]).refines(coarse)
    assert not Partition.from_sizes([1, 2, 1]).refines(coarse)


def test_non_contiguous_partition_is_allowed():
    p = Partition([[0, 2], [1, 3]])
    assert not p.is_contiguous
    assert p.bucket_of.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("buckets", "dim", "message"),
    [
        ([[0, 1], [1, 2]], 3, "overlap"),
        ([[0], [2]], 3, "do not cover"),
        ([[0, 1], []], 2, "bucket 1 is empty"),
        ([], 0, "at least one bucket"),
        ([[0, 5]], 3, "must lie in"),
        ([[-1, 0]], 2, "must lie in"),
    ],
)
def test_invalid_partitions_are_rejected_with_the_reason(buckets, dim, message):
    with pytest.raises(PartitionError, match=message):
        Partition(buckets, dim=dim)


def test_zero_size_bucket_is_rejected():
    with pytest.raises(PartitionError, match="bucket 1 is empty"):
        Partition.from_sizes([2, 0, 1])


def test_names_must_match_bucket_count():
    with pytest.raises(PartitionError, match="2 names given for 1 buckets"):
        Partition.from_sizes([3], names=["a", "b"])
