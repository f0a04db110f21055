"""The graph network of Cranmer et al. (2020): one message-passing step, sum (or mean) aggregation,
no global block, on any :class:`~symdistill.graphs.GraphBatch` and for any problem
(:mod:`symdistill.problems`), which names the inputs and the target:

    message_ij = phi_e(edge inputs of j -> i)          (edge model, an MLP)
    y_i        = phi_v(node inputs of i, sum_j m_ij)    (node model, an MLP; any output width)

A per-graph target is the sum of the node outputs of each graph. For the N-body problem y_i is the
acceleration a_i.

Node model. ``node_model="mlp"`` is the paper's: one MLP on [node inputs, messages]. The default,
``"additive"``, is Newton's second law with superposition built in: ``a_i = MLP(node inputs) +
W (sum_j m_ij) / m_i``, linear in the summed messages. With an MLP node model a heavy-tailed law
(r^-1, r^-2, charge) lets the network encode forces nonlinearly: one near neighbour dominates each
sum, so the node model can undo a compressed message; its messages then stop being linear in the force
(measured: r^-2 force R^2 0.06 on the 99% of edges without near-collisions, against 0.91 additive).
Velocity-dependent self forces (damping) still fit: they go through the node inputs.

Inputs and targets are normalised inside the model by per-feature scales measured once on training
data (:meth:`GraphNetwork.fit_scales`, stored as buffers so checkpoints carry them): the MLPs see
numbers of order 1 whatever the system's units, which is what lets one learning rate work for
spring (forces ~1) and r^-2 (forces spanning decades). Messages live in the model's units; force R^2
is affine-invariant, so this does not affect the analysis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from symdistill.errors import SymdistillError, check_positive, unknown_name
from symdistill.graphs.batch import GraphBatch
from symdistill.models.messages import VARIANTS, get_variant
from symdistill.models.mlp import ACTIVATIONS, MLP
from symdistill.problems import EDGE_INPUTS, NBodyForces, Problem


NODE_MESSAGES = ("sum", "over_mass", "both")
AGGREGATIONS = ("sum", "mean")
NODE_MODELS = ("additive", "mlp")
TARGET_SCALES = ("median", "rms")
#: Every model: the message variants, and the Hamiltonian network (:mod:`symdistill.models.hamiltonian`).
MODELS = (*VARIANTS, "hamiltonian")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Defaults are the fastest-converging ones we measured on 2 CPU cores
    (docs/benchmarks.md); the paper's (PAPER.md §3) are hidden=300, layers=3, relu,
    message_dim=100, l1_weight=1e-2, node_messages="sum", node_model="mlp" (the ``paper`` preset)."""

    variant: str = "l1"            # standard, bottleneck, l1, kl, or hamiltonian (FlatHGN)
    edge_inputs: str = "relative"  # relative or paper
    hidden: int = 128
    layers: int = 3
    activation: str = "relu"
    message_dim: int = 100         # ignored by bottleneck (dim = spatial dim)
    l1_weight: float = 3e-2        # on mean over edges of sum_k |m_k|; the paper's 1e-2 is slower here
    kl_weight: float = 1.0
    inverse_mass: bool = True      # node model also sees 1/m
    node_messages: str = "over_mass"  # what the node model gets: "sum" of messages (paper), "over_mass"
    #   (sum / m: Newton's second law built in, so a force-like message is the simplest solution), "both"
    node_model: str = "additive"   # "mlp" (paper): acc = MLP(node inputs, messages); "additive":
    #   acc = MLP(node inputs) + linear(messages), superposition built in (see the module docstring)
    target_scale: str = "median"   # targets are divided by their median nonzero |component| ("median")
    #   or by their RMS clipped at the 99th percentile ("rms": the paper preset, and older runs)
    aggregation: str = "sum"       # of the incoming messages: "sum" (the paper's) or "mean"
    # hamiltonian only (symdistill.models.hamiltonian): the weight of the velocity half of Hamilton's
    # equations (dH/dp = v) and of the L2 penalty on the energies
    velocity_weight: float = 1.0
    energy_weight: float = 1e-3

    def __post_init__(self):
        for label, value, choices in (("model", self.variant, MODELS), ("edge inputs", self.edge_inputs, EDGE_INPUTS),
                                      ("activation", self.activation, ACTIVATIONS),
                                      ("node messages", self.node_messages, NODE_MESSAGES),
                                      ("node model", self.node_model, NODE_MODELS),
                                      ("target scale", self.target_scale, TARGET_SCALES),
                                      ("aggregation", self.aggregation, AGGREGATIONS)):
            if value not in choices:
                raise unknown_name(label, value, choices)
        for name in ("hidden", "layers", "message_dim"):
            check_positive(f"model.{name}", getattr(self, name))
        for name in ("l1_weight", "kl_weight", "velocity_weight", "energy_weight"):
            check_positive(f"model.{name}", getattr(self, name), allow_zero=True)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Output:
    """What one forward pass gives.

    Shapes:
        pred: [V, K] (per-node target) or [G, K] (per-graph), normalised (divide targets by
            ``model.out_scale``); for the N-body problem the accelerations, also named ``acc``
        messages: [E, M] (sampled for kl in training); raw: [E, raw_dim]; summed: [V, M]
        penalty: scalar, the variant's weighted regulariser
    """

    pred: torch.Tensor
    messages: torch.Tensor
    raw: torch.Tensor
    summed: torch.Tensor
    penalty: torch.Tensor

    @property
    def acc(self) -> torch.Tensor:
        return self.pred


def _robust_rms(x: torch.Tensor, dim=0) -> torch.Tensor:
    """RMS after clipping at the 99th percentile of |x| (near-collisions must not set the scale)."""
    a = x.abs().double()
    q = torch.quantile(a[: 1 << 20], 0.99, dim=dim, keepdim=True) if a.numel() else a
    return torch.sqrt((torch.minimum(a, q) ** 2).mean(dim))


@torch.no_grad()
def fit_grouped_scales(problem: Problem, names, feats: torch.Tensor, buf: torch.Tensor) -> None:
    """Fill ``buf`` [F] with the robust RMS of each column of ``feats`` [rows, F]; the columns of one
    ``problem.feature_group`` share one scale (the RMS of theirs), and a zero scale becomes 1."""
    rms = _robust_rms(feats)
    groups = [problem.feature_group(n) for n in names]
    for g in set(groups):
        cols = [i for i, h in enumerate(groups) if h == g]
        s = float(torch.sqrt((rms[cols] ** 2).mean()))
        buf[cols] = s if s > 0 else 1.0


class GraphNetwork(nn.Module):
    """Edge model + aggregation + node model. Build with a :class:`ModelConfig` and the spatial dim
    (the N-body problem, configured by ``config.edge_inputs`` and ``config.inverse_mass``), or with
    any :class:`~symdistill.problems.Problem` as ``problem``.

    Shapes (a :class:`GraphBatch` of V nodes, E edges, G graphs; K the target's width):
        forward(batch) -> Output with pred [V or G, K] (normalised), messages [E, M]
        predict(batch) -> [V or G, K] in data units
    """

    def __init__(self, config: ModelConfig, dim: int | None = None, *, problem: Problem | None = None):
        super().__init__()
        if problem is None:
            problem = NBodyForces(dim, config.edge_inputs, config.inverse_mass)
        self.config, self.problem, self.dim = config, problem, getattr(problem, "dim", dim)
        c = config
        weight = {"l1": c.l1_weight, "kl": c.kl_weight}.get(c.variant, 0.0)
        self.variant = get_variant(c.variant, weight)
        self.edge_input_names = list(problem.edge_names)
        self.node_input_names = list(problem.node_names)
        out = problem.target.width
        self.message_dim = self.variant.message_dim(c.message_dim, problem.message_width)
        raw_dim = self.variant.raw_dim(c.message_dim, problem.message_width)
        self.edge_model = MLP(len(self.edge_input_names), raw_dim, c.hidden, c.layers, c.activation)
        n_msg = self.message_dim * (2 if c.node_messages == "both" else 1)
        n_node = len(self.node_input_names)
        if c.node_messages != "sum" and problem.message_divisor not in self.node_input_names:
            raise SymdistillError(f"node_messages={c.node_messages!r} divides the messages by a node input the "
                                  f"{problem.name} problem does not have: use node_messages=sum")
        if c.node_model == "additive":
            self.node_model = MLP(n_node, out, c.hidden, c.layers, c.activation)
            self.node_linear = nn.Linear(n_msg, out, bias=False)
        else:
            self.node_model = MLP(n_node + n_msg, out, c.hidden, c.layers, c.activation)
        self.register_buffer("edge_scale", torch.ones(len(self.edge_input_names)))
        self.register_buffer("node_scale", torch.ones(len(self.node_input_names)))
        self.register_buffer("out_scale", torch.ones(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "acc_scale"  # checkpoints before the problem specs named the target scale so
        if old in state_dict and prefix + "out_scale" not in state_dict:
            state_dict[prefix + "out_scale"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def acc_scale(self) -> torch.Tensor:
        """The target's scale (named for the N-body problem's accelerations)."""
        return self.out_scale

    @property
    def device(self) -> torch.device:
        return self.out_scale.device

    # ---- features ----------------------------------------------------------------------------
    def edge_features(self, batch: GraphBatch) -> torch.Tensor:
        """Raw (unnormalised) edge inputs [E, F_e], columns named by ``edge_input_names``."""
        return self.problem.edge_features(batch)

    def node_features(self, batch: GraphBatch) -> torch.Tensor:
        """Raw (unnormalised) node inputs [V, F_v], columns named by ``node_input_names``."""
        return self.problem.node_features(batch)

    @torch.no_grad()
    def fit_scales(self, batch: GraphBatch) -> "GraphNetwork":
        """Measure input and target scales on (a sample of) training data; columns in one group
        (dx/dy/dz, m1/m2, ...) share a scale so that rotations and swaps commute with normalisation."""
        fit_grouped_scales(self.problem, self.edge_input_names, self.edge_features(batch), self.edge_scale)
        fit_grouped_scales(self.problem, self.node_input_names, self.node_features(batch), self.node_scale)
        target = self.problem.target_values(batch)
        if target is None:
            raise SymdistillError(f"fit_scales needs a batch with its target ({self.problem.target.name!r})")
        a = target.reshape(-1)
        if self.config.target_scale == "median":  # of the nonzero ones: on discontinuous data half
            nonzero = a.abs()[: 1 << 22].double()   # the nodes feel no force at all
            nonzero = nonzero[nonzero > 0]
            s = float(nonzero.median()) if nonzero.numel() else 1.0
        else:
            s = float(_robust_rms(a))
        self.out_scale.fill_(s if s > 0 else 1.0)
        return self

    # ---- the two models ----------------------------------------------------------------------
    def edge_raw(self, batch: GraphBatch, edge_feats: torch.Tensor | None = None) -> torch.Tensor:
        """Raw edge-model outputs [E, raw_dim] (for kl: means then log-variances)."""
        f = self.edge_features(batch) if edge_feats is None else edge_feats
        return self.edge_model(f / self.edge_scale)

    def aggregate(self, messages: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        """Sum (or mean) of incoming messages per node, [V, M]; a node without edges gets 0."""
        if batch.in_degree is not None:  # receiver-major, constant in-degree: a reshape, no scatter
            grouped = messages.view(batch.n_nodes, batch.in_degree, messages.shape[1])
            return grouped.mean(1) if self.config.aggregation == "mean" else grouped.sum(1)
        out = messages.new_zeros(batch.n_nodes, messages.shape[1])
        out.index_add_(0, batch.edge_index[1], messages)
        if self.config.aggregation == "mean":
            degree = torch.bincount(batch.edge_index[1], minlength=batch.n_nodes).clamp(min=1)
            out = out / degree[:, None].to(out.dtype)
        return out

    def node_forward(self, node_feats: torch.Tensor, summed: torch.Tensor) -> torch.Tensor:
        """Node model on raw node inputs [V, F_v] and summed messages [V, M] -> normalised outputs [V, K]."""
        feats, msgs = node_feats / self.node_scale, []
        if self.config.node_messages in ("sum", "both"):
            msgs.append(summed)
        if self.config.node_messages in ("over_mass", "both"):
            i = self.node_input_names.index(self.problem.message_divisor)
            msgs.append(summed * (self.node_scale[i] / node_feats[:, i])[:, None])
        if self.config.node_model == "additive":
            return self.node_model(feats) + self.node_linear(torch.cat(msgs, dim=1))
        return self.node_model(torch.cat([feats, *msgs], dim=1))

    def apply_node_model(self, node_feats: torch.Tensor, summed: torch.Tensor) -> torch.Tensor:
        """The node model alone, in data units: outputs [V, K] (N-body: accelerations) from raw node
        inputs [V, F_v] (columns ``node_input_names``) and summed messages [V, M] (as
        :func:`record_messages` gives)."""
        return self.node_forward(node_feats, summed) * self.out_scale

    def readout(self, node_out: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        """Node outputs [V, K] -> the target's rows: themselves (per node) or their sum per graph [G, K]."""
        if self.problem.target.level == "node":
            return node_out
        return node_out.new_zeros(batch.n_graphs, node_out.shape[1]).index_add_(0, batch.graph, node_out)

    def forward(self, batch: GraphBatch, *, sample: bool = False, generator=None) -> Output:
        raw = self.edge_raw(batch)
        msg = self.variant.messages(raw, sample=sample, generator=generator)
        summed = self.aggregate(msg, batch)
        pred = self.readout(self.node_forward(self.node_features(batch), summed), batch)
        return Output(pred=pred, messages=msg, raw=raw, summed=summed, penalty=self.variant.penalty(raw))

    @torch.no_grad()
    def predict(self, batch: GraphBatch) -> torch.Tensor:
        """Predictions in data units [V or G, K] (N-body: accelerations [V, D]; kl: from the means)."""
        return (self(batch.to(self.device)).pred * self.out_scale).to(batch.device)

    def matmul_flops(self, n_nodes: int, n_edges: int) -> int:
        """FLOPs of the MLP matrix products in one forward pass (backward is ~2x this)."""
        flops = self.edge_model.matmul_flops(n_edges) + self.node_model.matmul_flops(n_nodes)
        if self.config.node_model == "additive":
            flops += 2 * n_nodes * self.node_linear.in_features * self.node_linear.out_features
        return flops
