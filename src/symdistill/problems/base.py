"""What a problem is: everything specific to one kind of data, and nothing else.

A :class:`Problem` owns

- the **feature schema**: the names of the edge-model inputs (``edge_names``), of the node-model inputs
  (``node_names``) and of the edge variables recorded for symbolic regression (``record_names``); which
  are a node's own and which relative to a neighbour; which share a normalisation scale
  (:meth:`feature_group`); how to compute them from a :class:`~symdistill.graphs.GraphBatch`;
- the **target** (:class:`Target`: its name in the batch, per node or per graph, its width) and its
  **loss** (:meth:`loss`);
- the **ground truth**, if any (:meth:`edge_truth`: what an ideal message would be on each edge), and
  **how a discovered formula is judged** against it (:meth:`judge`).

The network (:class:`symdistill.models.GraphNetwork`), the training loop, the recorder and the
searches read these; they hold no feature names of their own. A new problem is a new subclass,
registered in :data:`PROBLEMS` (docs/architecture.md walks through the N-body one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symdistill.errors import SymdistillError

TARGET_LEVELS = ("node", "graph")
#: Prediction losses: per-row L1 error summed over components, averaged over rows ("mae", the
#: paper's), or that error divided by (the target's per-row L1 norm + floor) ("relative").
LOSSES = ("relative", "mae")


@dataclass(frozen=True)
class Target:
    """What the network predicts. Shapes: per node [V, width], per graph [G, width]."""

    name: str          # its key in ``GraphBatch.targets``
    level: str = "node"
    width: int = 1
    description: str = ""

    def __post_init__(self):
        if self.level not in TARGET_LEVELS:
            raise SymdistillError(f"A target's level must be one of {TARGET_LEVELS} (got {self.level!r})")
        if self.width < 1:
            raise SymdistillError(f"A target needs width >= 1 (got {self.width})")


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mae", floor: float = 3.0) -> torch.Tensor:
    """Scalar loss of predictions against targets, both [rows, K] and in the same (normalised) units."""
    err = (pred - target).abs().sum(1)
    if kind == "relative":
        err = err / (target.abs().sum(1) + floor)
    elif kind != "mae":
        raise SymdistillError(f"Unknown loss {kind!r}: choose one of {LOSSES}")
    return err.mean()


class Problem:
    """Base class: subclasses set the names and implement the feature maps (module docstring)."""

    name = "problem"
    target: Target
    edge_names: list[str]
    node_names: list[str]
    record_names: list[str]
    #: A node input the summed messages may be divided by (``node_messages="over_mass"``), or None.
    message_divisor: str | None = None
    #: What distillation searches: "messages" (the edge model's outputs: pair forces) or "energy"
    #: (a Hamiltonian network's pair and self energies).
    distills = "messages"

    @property
    def message_width(self) -> int:
        """Components the true messages have (the bottleneck's width, and the significant ones kept)."""
        return self.target.width

    # ---- features ----------------------------------------------------------------------------
    def edge_features(self, batch) -> torch.Tensor:
        """Edge-model inputs [E, len(edge_names)], raw (the network normalises them)."""
        raise NotImplementedError

    def node_features(self, batch) -> torch.Tensor:
        """Node-model inputs [V, len(node_names)], raw."""
        raise NotImplementedError

    def record_features(self, batch) -> torch.Tensor:
        """The edge variables searched by symbolic regression [E, len(record_names)], float64."""
        raise NotImplementedError

    def feature_group(self, name: str) -> str:
        """Columns sharing one normalisation scale (default: each its own)."""
        return name

    def augment(self, batch, generator: torch.Generator, shift: float):
        """A training-time augmentation of one batch (default: none)."""
        return batch

    # ---- target ------------------------------------------------------------------------------
    def target_values(self, batch) -> torch.Tensor | None:
        """The batch's target, [V or G, width], or None (a prediction-only batch)."""
        t = batch.targets.get(self.target.name)
        return None if t is None else t.reshape(t.shape[0], -1)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, kind: str = "mae", floor: float = 3.0) -> torch.Tensor:
        return prediction_loss(pred, target, kind, floor)

    # ---- truth and judgement -----------------------------------------------------------------
    def edge_truth(self, truth, batch) -> np.ndarray | None:
        """What an ideal message would carry on every edge, [E, K] float64 (None: no ground truth)."""
        return None

    def judge(self, formulas, truth, *, scalar=None):
        """Whether discovered message formulas are the truth, and why (a verification result)."""
        raise SymdistillError(f"The {self.name} problem has no ground truth to judge a formula against")

    def to_dict(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{self.__class__.__name__}({args})"
