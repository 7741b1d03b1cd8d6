"""The model and the synthetic multilingual data the simulator trains on.

Language k is a first-order Markov chain over a shared vocabulary whose
transition rows are random softmaxes drawn with a language-specific seed, so
the languages genuinely disagree about the next token. Everything is a pure
function of (seed, language, step): every rank, and the single-process
reference, rebuild exactly the same batches without communicating.

The global batch of language k at each step has ``batch[k]`` sequences; rank r
gets a contiguous slice (``torch.tensor_split``), so shards may be uneven and a
rank may hold no sequence of a language. Each rank's loss for language k is
the sum of its token losses divided by the language's *global* token count,
so the losses summed over ranks are the global per-language mean losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class WorkloadConfig:
    model: str = "gpt2"
    """``gpt2`` (a transformers causal LM built from a local config) or ``mlp``."""
    vocab: int = 64
    width: int = 32
    layers: int = 2
    heads: int = 2
    seq_len: int = 16
    batch: tuple[int, ...] = field(default=(4, 4, 4))
    """Global sequences per language per step; K = len(batch)."""
    dtype: str = "float32"
    seed: int = 0

    @property
    def num_languages(self) -> int:
        return len(self.batch)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]


class BigramMLP(nn.Module):
    """A next-token model that sees only the previous token: cheap, and still an LM."""

    def __init__(self, vocab: int, width: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.embed(input_ids)
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.head(h)


def build_model(cfg: WorkloadConfig) -> nn.Module:
    """The same initial model in every process (seeded), in the configured dtype."""
    torch.manual_seed(cfg.seed)
    if cfg.model == "mlp":
        model = BigramMLP(cfg.vocab, cfg.width, cfg.layers)
    elif cfg.model == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=cfg.vocab, n_positions=cfg.seq_len, n_embd=cfg.width,
                            n_layer=cfg.layers, n_head=cfg.heads, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                            attn_implementation="eager")
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown model {cfg.model!r}; choose gpt2 or mlp")
    return model.to(cfg.torch_dtype).train()


def block_names(model: nn.Module) -> list[str]:
    """The transformer blocks (or MLP layers): the natural FSDP2 units."""
    return [n for n, m in model.named_modules()
            if type(m).__name__ == "GPT2Block"
            or (n.startswith("blocks.") and n.count(".") == 1)]


def _transitions(cfg: WorkloadConfig, k: int) -> Tensor:
    g = torch.Generator().manual_seed(1_000_003 * (cfg.seed + 1) + k)
    # Peaked rows (softmax of 3·N(0,1) logits): a few likely successors per token.
    return torch.softmax(3.0 * torch.randn(cfg.vocab, cfg.vocab, generator=g), dim=-1)


def global_batch(cfg: WorkloadConfig, k: int, step: int) -> Tensor:
    """Language k's sequences for ``step``: ``[batch[k], seq_len]`` token ids."""
    P = _transitions(cfg, k)
    g = torch.Generator().manual_seed((cfg.seed * 7919 + k) * 1_000_033 + step)
    n, T = cfg.batch[k], cfg.seq_len
    seq = torch.empty(n, T, dtype=torch.long)
    seq[:, 0] = torch.randint(cfg.vocab, (n,), generator=g)
    for t in range(1, T):
        seq[:, t] = torch.multinomial(P[seq[:, t - 1]], 1, generator=g).squeeze(1)
    return seq


def shard(cfg: WorkloadConfig, k: int, step: int, rank: int, world_size: int) -> Tensor:
    return torch.tensor_split(global_batch(cfg, k, step), world_size)[rank]


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(input_ids=x) if not isinstance(model, BigramMLP) else model(x)
    return out.logits if hasattr(out, "logits") else out


def language_losses(cfg: WorkloadConfig, model: nn.Module, step: int, rank: int,
                    world_size: int, *, zero_if_empty: bool = False
                    ) -> list[Callable[[], Tensor] | None]:
    """Rank ``rank``'s K loss closures for ``step``.

    Where the rank holds no data of a language the closure is ``None``, or with
    ``zero_if_empty`` a forward on one sequence times 0: engines such as DDP
    only join a reduction from inside a forward/backward, so the rank must run
    one, and its gradient must be exactly zero.
    """
    device = next(model.parameters()).device
    out: list[Callable[[], Tensor] | None] = []
    for k in range(cfg.num_languages):
        x = shard(cfg, k, step, rank, world_size)
        scale = 1.0 / (cfg.batch[k] * (cfg.seq_len - 1))  # the language's global tokens
        if x.shape[0] == 0:
            if not zero_if_empty:
                out.append(None)
                continue
            x, scale = global_batch(cfg, k, step)[:1], 0.0
        x = x.to(device)

        def loss(x: Tensor = x, scale: float = scale) -> Tensor:
            logits = _logits(model, x)[:, :-1]
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                   reduction="sum") * scale
        out.append(loss)
    return out


def probe_loss(cfg: WorkloadConfig, model: nn.Module) -> Callable[[], Tensor]:
    """Rank 0's first loss of step 0, the same in every process: shows the
    gradient-ready order that DDP and ZeRO-2 build their buckets from."""
    return next(f for f in language_losses(cfg, model, 0, 0, 1) if f is not None)
