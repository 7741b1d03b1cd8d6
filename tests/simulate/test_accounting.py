"""Issued collectives vs the ring formulas, exactly; gradient memory per strategy, exactly.

The expectations below are written out by hand from DESIGN.md's formulas, not
taken from simulate.formulas, so the two are checked against each other.
"""

import pytest

from simulate.config import RunConfig
from simulate.run import run_many
from simulate.workload import WorkloadConfig

W, K = 2, 3
WL = WorkloadConfig(model="mlp", width=16, layers=2, vocab=32, seq_len=8, batch=(2, 3, 1))
# D = 32·16 + 2·(16·16 + 16) + 16·32 + 32 = 1600; chunks of 300: 5 × 300 + 100.
D, SIZES = 1600, [300] * 5 + [100]


@pytest.fixture(scope="module")
def results():
    configs = [RunConfig(strategy=s, aggregator="mgda", partition="chunks:300", world_size=W,
                         steps=2, workload=WL)
               for s in ("standard", "bucket", "bucket-replicated", "full-naive", "full-gram")]
    return {m["strategy"]: m for m in run_many(configs)}


def _chunk(m):
    # Balanced contiguous runs: [300, 300, 300] and [300, 300, 100].
    assert m["shard_sizes"] == [900, 700]
    return 900


def expected_bytes(strategy, chunk):
    f = 4  # float32
    rs = K * (W - 1) * chunk * f                    # (W−1)/W · (W·chunk), K times
    ag_param = (W - 1) * chunk * f
    return {
        "standard": {"all_reduce:grad": 2 * (W - 1) * D * f / W},
        "bucket": {"reduce_scatter:grad": rs, "all_gather:param": ag_param},
        "bucket-replicated": {"all_reduce:grad": K * 2 * (W - 1) * D * f / W},
        "full-naive": {"reduce_scatter:grad": rs, "all_gather:grad": rs,
                       "all_gather:param": ag_param},
        "full-gram": {"reduce_scatter:grad": rs,
                      "all_reduce:gram": 2 * (W - 1) * (K * (K + 1) // 2) * f / W,
                      "all_gather:param": ag_param},
    }[strategy]


def expected_grad_peak(strategy, chunk):
    f = 4
    local = D                      # the flat gradient autograd writes into
    send = W * chunk               # owner-major copy for the reduce-scatter
    shards = K * chunk             # the K reduced shards this rank owns
    return f * {
        "standard": local,
        "bucket": local + send + shards + chunk,
        "bucket-replicated": local + K * D + D,
        "full-naive": local + send + shards + K * W * chunk + K * D + D,
        "full-gram": local + send + shards + chunk,
    }[strategy]


STRATEGIES = ("standard", "bucket", "bucket-replicated", "full-naive", "full-gram")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bytes_sent_equal_the_ring_formulas(results, strategy):
    m = results[strategy]
    want = expected_bytes(strategy, _chunk(m))
    assert m["bytes_sent_per_rank"] == pytest.approx(want, abs=0)
    assert m["bytes_predicted_per_rank"] == pytest.approx(want, abs=0)
    assert m["accounting_exact"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_calls_per_step(results, strategy):
    calls = results[strategy]["calls_per_rank"]
    per_language = {"reduce_scatter:grad", "all_gather:grad"}
    for key, n in calls.items():
        if key in per_language or (strategy == "bucket-replicated" and key == "all_reduce:grad"):
            assert n == K
        else:
            assert n == 1


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradient_memory_peak(results, strategy):
    m = results[strategy]
    chunk = _chunk(m)
    peaks = m["grad_peak_bytes_per_rank"]
    # Rank 1 owns 700 columns: its direction is smaller, all else is padded alike.
    smaller = {"bucket": 4 * (chunk - 700), "full-gram": 4 * (chunk - 700)}.get(strategy, 0)
    assert peaks == [expected_grad_peak(strategy, chunk),
                     expected_grad_peak(strategy, chunk) - smaller]


@pytest.mark.slow
def test_bucket_never_holds_a_full_reduced_gradient(results):
    # The point of ownership: per rank, bucket stores K/W of the reduced
    # gradients where the replicated and naive strategies store all K.
    b, r, n = (max(results[s]["grad_peak_bytes_per_rank"])
               for s in ("bucket", "bucket-replicated", "full-naive"))
    assert b < r < n


@pytest.mark.slow
def test_wire_bytes_bracket_the_ring_model(results):
    # What the process really wrote to its sockets: gloo's all-reduce and
    # all-gather match the ring model plus small headers; its reduce-scatter
    # moves about as much as an all-reduce (it is built on one).
    m = results["full-naive"]
    for key in ("all_gather:grad", "all_gather:param"):
        ring, wire = m["bytes_sent_per_rank"][key], m["wire_bytes_per_rank"][key]
        calls = m["calls_per_rank"][key]
        assert ring <= wire <= ring + 4096 * calls, (key, ring, wire)
    rs_ring = m["bytes_sent_per_rank"]["reduce_scatter:grad"]
    assert m["wire_bytes_per_rank"]["reduce_scatter:grad"] >= rs_ring
