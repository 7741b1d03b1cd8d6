"""Partitions of the parameter vector into buckets, and builders that mirror real engines."""

from ._partition import Partition, PartitionError

__all__ = ["Partition", "PartitionError"]
