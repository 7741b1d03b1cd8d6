"""The five strategies, by the names the command line uses."""

from ._base import Strategy, StrategyContext, TraceRecord
from .bucket import Bucket
from .full_gram import FullGram
from .full_naive import FullNaive
from .replicated import BucketReplicated
from .standard import Standard

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Standard, Bucket, BucketReplicated, FullNaive, FullGram)}

__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "TraceRecord"]
