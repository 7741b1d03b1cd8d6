"""Partitions of the parameter vector into buckets, and builders that mirror real engines.

The column order is the flat parameter vector of :mod:`refmoo.partitions.flat`.
Model-based builders return a :class:`Partition` whose :attr:`~Partition.layout`
traces every bucket to parameter slices.
"""

from ._partition import Partition, PartitionError
from .ddp import ddp_buckets
from .flat import ParamSpan, flat_parameters, trainable_parameters
from .fsdp import fsdp2_units
from .layout import BucketLayout, ParamPiece, partition_from_layout
from .ready_order import gradient_ready_order
from .structural import per_module, per_tensor
from .zero import zero_buckets

__all__ = [
    "BucketLayout",
    "ParamPiece",
    "ParamSpan",
    "Partition",
    "PartitionError",
    "ddp_buckets",
    "flat_parameters",
    "fsdp2_units",
    "gradient_ready_order",
    "partition_from_layout",
    "per_module",
    "per_tensor",
    "trainable_parameters",
    "zero_buckets",
]
