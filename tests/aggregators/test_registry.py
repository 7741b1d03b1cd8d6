"""The name registry and the public names of every aggregator."""

import pytest
import torch

import refmoo
from refmoo.aggregators import AGGREGATORS, Aggregator, GramAggregator, get_aggregator

PUBLIC = ["MGDA", "PCGrad", "CAGrad", "UPGrad", "NashMTL", "IMTLG", "AlignedMTL", "Mean", "Sum",
          "GradDrop"]


def test_registry_names_are_exactly_the_lower_case_set():
    assert set(AGGREGATORS) == {"mgda", "pcgrad", "cagrad", "nashmtl", "imtlg", "upgrad",
                                "alignedmtl", "mean", "sum", "graddrop"}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_the_registered_class(name):
    cls = getattr(refmoo, name)
    assert AGGREGATORS[name.lower()] is cls
    assert issubclass(cls, Aggregator)


def test_only_graddrop_is_not_gram_based():
    not_gram = {name for name, cls in AGGREGATORS.items() if not issubclass(cls, GramAggregator)}
    assert not_gram == {"graddrop"}


def test_get_aggregator_builds_with_keyword_arguments_and_ignores_case():
    agg = get_aggregator("CAGrad", c=0.7, rescale=0)
    assert isinstance(agg, refmoo.CAGrad) and agg.c == 0.7 and agg.rescale == 0
    assert isinstance(get_aggregator("Nash-MTL"), refmoo.NashMTL)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"'upgrad'") as info:
        get_aggregator("upgrade")
    assert "Known: mgda" in str(info.value)
    with pytest.raises(ValueError, match="unknown aggregator 'zzz'; Known"):
        get_aggregator("zzz")


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_every_aggregator_returns_g1_for_one_language(name):
    g = torch.tensor([[3.0, -4.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(get_aggregator(name)(g), g[0], rtol=1e-12, atol=0.0)
