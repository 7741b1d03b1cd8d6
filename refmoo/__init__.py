"""refmoo: an exact single-process reference for full-vector and bucket-level MOO.

G is the K×D matrix of per-language gradients (one row per language); a
:class:`Partition` splits the D columns into buckets; an aggregator maps G to
the update direction, and :func:`bucketwise` applies it bucket by bucket.
"""

from ._checks import GradientError
from .aggregators import (
    AGGREGATORS,
    IMTLG,
    MGDA,
    Aggregator,
    AlignedMTL,
    CAGrad,
    GradDrop,
    GramAggregator,
    Mean,
    NashMTL,
    PCGrad,
    Sum,
    UPGrad,
    get_aggregator,
)
from .bucketwise import bucket_grams, bucketwise, combine
from .gradients import flat_grad, language_gradients, reference_step, unflatten, write_flat_grad
from .min_norm import MinNormSolution, min_norm_weights, solve_min_norm
from .partitions import (
    Partition,
    PartitionError,
    ddp_buckets,
    flat_parameters,
    fsdp2_units,
    per_module,
    per_tensor,
    zero_buckets,
)
from .stationarity import (
    ParetoCertificate,
    RefinedParetoCertificate,
    pareto_stationarity,
    refined_pareto_stationarity,
)

__all__ = [
    "zero_buckets",
    "write_flat_grad",
    "unflatten",
    "reference_step",
    "per_tensor",
    "per_module",
    "language_gradients",
    "fsdp2_units",
    "flat_parameters",
    "flat_grad",
    "ddp_buckets",
    "AGGREGATORS",
    "Aggregator",
    "AlignedMTL",
    "CAGrad",
    "GradDrop",
    "IMTLG",
    "NashMTL",
    "PCGrad",
    "UPGrad",
    "get_aggregator",
    "GradientError",
    "GramAggregator",
    "MGDA",
    "Mean",
    "MinNormSolution",
    "ParetoCertificate",
    "Partition",
    "PartitionError",
    "RefinedParetoCertificate",
    "Sum",
    "bucket_grams",
    "bucketwise",
    "combine",
    "min_norm_weights",
    "pareto_stationarity",
    "refined_pareto_stationarity",
    "solve_min_norm",
]
