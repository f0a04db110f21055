"""Message variants as components: how the edge model's raw output becomes a message, what it costs.

A variant never subclasses the network; :class:`symdistill.models.GraphNetwork` holds one.

- ``standard``: message dim 100, no penalty.
- ``bottleneck``: message dim = spatial dim, no penalty.
- ``l1``: penalty ``l1_weight x mean over edges of sum_k |m_k|`` over *every* edge of the batch
  (the reference code penalised only the first graph's). With the loss written like the paper's
  (per-node L1 error summed over dims, averaged over nodes), ``l1_weight = 1e-2`` is the paper's scale.
- ``kl``: the edge model outputs mean and log-variance; messages are sampled in training, means are
  used for evaluation and analysis; penalty ``kl_weight x mean over edges of sum_k KL(N(mu, s^2) || N(0, 1))``.

Each variant also ranks components by significance (PAPER.md §4): std for standard / l1 /
bottleneck, mean KL for kl.
"""

from __future__ import annotations

import torch

from symdistill.errors import unknown_name


class Variant:
    name = "standard"
    penalised = False

    def __init__(self, weight: float = 0.0):
        self.weight = float(weight)

    def message_dim(self, message_dim: int, dim: int) -> int:
        return message_dim

    def raw_dim(self, message_dim: int, dim: int) -> int:
        return self.message_dim(message_dim, dim)

    def messages(self, raw: torch.Tensor, *, sample: bool = False, generator=None) -> torch.Tensor:
        """Messages [E, M] from raw edge-model outputs [E, raw_dim]."""
        return raw

    def penalty(self, raw: torch.Tensor) -> torch.Tensor:
        """The weighted regulariser, a scalar (0 for unpenalised variants)."""
        return raw.new_zeros(())

    def significance(self, raw: torch.Tensor) -> torch.Tensor:
        """Per-component significance [M] (higher = more significant)."""
        return self.messages(raw).std(0)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(weight={self.weight})"


class Standard(Variant):
    name = "standard"


class Bottleneck(Variant):
    name = "bottleneck"

    def message_dim(self, message_dim: int, dim: int) -> int:
        return dim


class L1(Variant):
    name = "l1"
    penalised = True

    def penalty(self, raw):
        return self.weight * raw.abs().sum(1).mean()


class KL(Variant):
    name = "kl"
    penalised = True

    def raw_dim(self, message_dim, dim):
        return 2 * message_dim

    @staticmethod
    def split(raw):
        mu, logvar = raw.chunk(2, dim=1)
        return mu, logvar

    def messages(self, raw, *, sample=False, generator=None):
        mu, logvar = self.split(raw)
        if not sample:
            return mu
        # drawn where the generator lives (the training loop's is on the CPU, whatever the device)
        where = mu.device if generator is None else generator.device
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=where).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    @classmethod
    def kl(cls, raw) -> torch.Tensor:
        """Per-edge, per-component KL(N(mu, exp(logvar)) || N(0, 1)), [E, M]."""
        mu, logvar = cls.split(raw)
        return 0.5 * (mu * mu + torch.exp(logvar) - logvar - 1.0)

    def penalty(self, raw):
        return self.weight * self.kl(raw).sum(1).mean()

    def significance(self, raw):
        return self.kl(raw).mean(0)


VARIANTS = {v.name: v for v in (Standard, Bottleneck, L1, KL)}


def get_variant(name: str, weight: float = 0.0) -> Variant:
    if name not in VARIANTS:
        raise unknown_name("model", name, VARIANTS)
    return VARIANTS[name](weight)
