"""Aggregators: one module each, every one mapping G (K×D) to a direction in R^D."""

from ._base import Aggregator, GramAggregator
from .mean import Mean
from .mgda import MGDA
from .sum import Sum

__all__ = ["Aggregator", "GramAggregator", "MGDA", "Mean", "Sum"]
