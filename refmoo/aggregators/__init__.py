"""Aggregators: one module each, every one mapping G (K×D) to a direction in R^D.

:data:`AGGREGATORS` maps lower-case names to classes; :func:`get_aggregator`
builds one by name.
"""

from __future__ import annotations

import difflib

from ._base import Aggregator, GramAggregator
from .aligned_mtl import AlignedMTL
from .cagrad import CAGrad
from .graddrop import GradDrop
from .imtl_g import IMTLG
from .mean import Mean
from .mgda import MGDA
from .nash_mtl import NashMTL
from .pcgrad import PCGrad
from .sum import Sum
from .upgrad import UPGrad

AGGREGATORS: dict[str, type[Aggregator]] = {
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "nashmtl": NashMTL,
    "imtlg": IMTLG,
    "upgrad": UPGrad,
    "alignedmtl": AlignedMTL,
    "mean": Mean,
    "sum": Sum,
    "graddrop": GradDrop,
}


def get_aggregator(name: str, **kwargs) -> Aggregator:
    """An instance of the aggregator registered as ``name`` (case-insensitive).

    >>> get_aggregator("CAGrad", c=0.5)
    CAGrad(c=0.5, rescale=2)
    >>> get_aggregator("upgrade")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown aggregator 'upgrade'; did you mean 'upgrad', ...? Known: mgda, pcgrad, ...
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in AGGREGATORS:
        close = difflib.get_close_matches(key, AGGREGATORS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown aggregator {name!r}; {hint}Known: {', '.join(AGGREGATORS)}")
    return AGGREGATORS[key](**kwargs)


__all__ = [
    "AGGREGATORS",
    "AlignedMTL",
    "Aggregator",
    "CAGrad",
    "GradDrop",
    "GramAggregator",
    "IMTLG",
    "MGDA",
    "Mean",
    "NashMTL",
    "PCGrad",
    "Sum",
    "UPGrad",
    "get_aggregator",
]
