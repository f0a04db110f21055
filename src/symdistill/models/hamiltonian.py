"""The flattened Hamiltonian graph network (FlatHGN, Cranmer et al. 2020 §3): an energy, and the
dynamics it implies by Hamilton's equations.

    H(q, p) = sum_i T(p_i, m_i, q_i) + sum_{i<j} U(r_ij, m_i, m_j, q_i, q_j)
    dq/dt = dH/dp,  dp/dt = -dH/dq,  so  a_i = -(dH/dq_i) / m_i

with canonical coordinates q = position and p = m v. ``T`` (the self energy) and ``U`` (the pair
energy) are MLPs with a smooth activation (Softplus by default: the accelerations are first
derivatives of H and training differentiates them again, so ReLU's zero second derivative is
refused). U is symmetric by construction: the pair energy of an edge is (f(i, j) + f(j, i)) / 2,
and on a graph whose every edge has its reverse (fully connected, radius) the total sum_{i<j} is
half the sum of f over the directed edges, so the network evaluates f once per edge.

Training (the loss of :mod:`symdistill.train.steps`): the problem's loss on the accelerations (as
for the message models), plus a penalty:

- ``velocity_weight`` x mean |dH/dp - v| / v_scale: from accelerations alone T is not identified at
  all (a depends on dH/dq only, and T depends on p only), so the velocities of the data, which are
  dq/dt, are the second half of Hamilton's equations that the model must satisfy. With it the
  scales of T and U are both fixed to the data's units (T -> p^2/2m).
- ``energy_weight`` x mean of the squared normalised energies over *every* edge and node of the batch
  (the paper's small L2 penalty; the reference code applied it to the first graph only). It keeps the
  unidentifiable offsets of U and T (terms without r, without p) small.

Inputs and energies are normalised by scales measured on training data (:meth:`fit_scales`), as in
:class:`symdistill.models.GraphNetwork`; the energies are returned in data units.
"""

from __future__ import annotations

import torch
from torch import nn

from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch
from symdistill.models.messages import Variant
from symdistill.models.mlp import MLP
from symdistill.models.network import Output, _robust_rms, fit_grouped_scales
from symdistill.problems.energy import SWAP_ENDS, NBodyEnergy, pair_inputs, self_inputs

#: Activations with a nonzero second derivative (the model is trained through its gradient).
SMOOTH_ACTIVATIONS = ("softplus", "silu", "gelu", "tanh")


def check_hamiltonian_config(config) -> None:
    """A one-line error for a model config the Hamiltonian network cannot train with."""
    if config.activation not in SMOOTH_ACTIVATIONS:
        raise SymdistillError(f"The hamiltonian model is trained through the gradient of its energy, so it needs a "
                              f"smooth activation (one of {', '.join(SMOOTH_ACTIVATIONS)}), not "
                              f"{config.activation!r}: --set model.activation=softplus")


class EnergyVariant(Variant):
    """The variant slot of a Hamiltonian network: one pair energy per edge, no message penalty."""

    name = "hamiltonian"

    def message_dim(self, message_dim: int, dim: int) -> int:
        return 1


class HamiltonianNetwork(nn.Module):
    """FlatHGN on N-body graphs (module docstring). Built like :class:`GraphNetwork`:
    ``HamiltonianNetwork(ModelConfig(variant="hamiltonian", activation="softplus"), dim)``.

    Shapes (a :class:`GraphBatch` of V nodes, E edges, G graphs; D the spatial dimension):
        energies(batch) -> (pair energy per edge [E], self energy per node [V]), data units
        forward(batch) -> Output with pred [V, D] (accelerations / out_scale), messages [E, 1]
            (normalised pair energies), penalty (velocity term + energy L2)
        predict(batch) -> accelerations [V, D]; velocities(batch) -> dH/dp [V, D]
        total_energy(batch) -> H per graph [G]
    """

    kind = "hamiltonian"

    def __init__(self, config, dim: int):
        super().__init__()
        check_hamiltonian_config(config)
        self.config, self.problem, self.dim = config, NBodyEnergy(dim), dim
        self.variant = EnergyVariant()
        self.message_dim = 1
        self.edge_input_names = list(self.problem.edge_names)
        self.node_input_names = list(self.problem.node_names)
        c = config
        self.pair_model = MLP(len(self.edge_input_names), 1, c.hidden, c.layers, c.activation)
        self.self_model = MLP(len(self.node_input_names), 1, c.hidden, c.layers, c.activation)
        self.register_buffer("edge_scale", torch.ones(len(self.edge_input_names)))
        self.register_buffer("node_scale", torch.ones(len(self.node_input_names)))
        self.register_buffer("out_scale", torch.ones(()))      # accelerations (the loss's units)
        self.register_buffer("vel_scale", torch.ones(()))
        self.register_buffer("pair_energy_scale", torch.ones(()))
        self.register_buffer("self_energy_scale", torch.ones(()))

    @property
    def device(self) -> torch.device:
        return self.out_scale.device

    @property
    def acc_scale(self) -> torch.Tensor:
        return self.out_scale

    @torch.no_grad()
    def fit_scales(self, batch: GraphBatch) -> "HamiltonianNetwork":
        """Input scales (m1/m2 and q1/q2 shared), the acceleration scale (median nonzero |a|), and the
        energy scales implied by them: U ~ (m a) r, T ~ p v."""
        fit_grouped_scales(self.problem, self.edge_input_names, self.problem.edge_features(batch), self.edge_scale)
        fit_grouped_scales(self.problem, self.node_input_names, self.problem.node_features(batch), self.node_scale)
        acc = self.problem.target_values(batch)
        if acc is None:
            raise SymdistillError("fit_scales needs a batch with its accelerations ('acc')")
        n = batch.nodes
        force = (n["mass"][:, None] * acc).abs().reshape(-1)[: 1 << 22].double()
        a = acc.abs().reshape(-1)[: 1 << 22].double()
        median = lambda x: float(x[x > 0].median()) if (x > 0).any() else 1.0  # noqa: E731
        self.out_scale.fill_(median(a))
        v = float(_robust_rms(n["vel"].reshape(-1))) or 1.0
        p = float(_robust_rms((n["mass"][:, None] * n["vel"]).reshape(-1))) or 1.0
        self.vel_scale.fill_(v)
        self.pair_energy_scale.fill_(median(force) * float(self.edge_scale[0]))
        self.self_energy_scale.fill_(p * v)
        return self

    # ---- energies --------------------------------------------------------------------------------
    def pair_energy(self, x: torch.Tensor) -> torch.Tensor:
        """f(r, m1, m2, q1, q2) [E] in data units (one ordering of the ends) from raw inputs [E, 5]."""
        return self.pair_model(x / self.edge_scale).squeeze(1) * self.pair_energy_scale

    def symmetric_pair_energy(self, x: torch.Tensor) -> torch.Tensor:
        """U [E] from raw inputs [E, 5], (f(i, j) + f(j, i)) / 2: the same for an edge and its reverse."""
        return 0.5 * (self.pair_energy(x) + self.pair_energy(x[:, SWAP_ENDS]))

    def self_energy(self, x: torch.Tensor) -> torch.Tensor:
        """T(p^2, m, q) [V] in data units from raw inputs [V, 3]."""
        return self.self_model(x / self.node_scale).squeeze(1) * self.self_energy_scale

    def _energies(self, pos, mom, mass, charge, batch: GraphBatch):
        """(pair energies of the directed edges [E], self energies [V], H per graph [G])."""
        ei = batch.edge_index
        x = pair_inputs(pos, mass, charge, ei)
        # every edge has its reverse (constant in-degree: fully connected): sum_{i<j} U = (1/2) sum_e f_e,
        # so f once per edge is enough; otherwise each edge gets the symmetric U
        f = self.pair_energy(x) if batch.in_degree is not None else self.symmetric_pair_energy(x)
        t = self.self_energy(self_inputs(mom, mass, charge))
        node = t.index_add(0, ei[1], 0.5 * f)
        h = node.new_zeros(batch.n_graphs).index_add_(0, batch.graph, node)
        return f, t, h

    def energies(self, batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(symmetric pair energy U per edge [E], self energy T per node [V]), data units, no gradient."""
        with torch.no_grad():
            return (self.symmetric_pair_energy(self.problem.edge_features(batch)),
                    self.self_energy(self.problem.node_features(batch)))

    def total_energy(self, batch: GraphBatch) -> torch.Tensor:
        """H of every graph [G], data units."""
        b = batch.to(self.device)
        n = b.nodes
        with torch.no_grad():
            return self._energies(n["pos"], n["mass"][:, None] * n["vel"], n["mass"], n["charge"], b)[2].to(batch.device)

    # ---- dynamics --------------------------------------------------------------------------------
    def dynamics(self, batch: GraphBatch, *, create_graph: bool):
        """(dH/dq [V, D], dH/dp [V, D], pair energies [E], self energies [V]) by autograd."""
        n = batch.nodes
        with torch.enable_grad():
            q = n["pos"].detach().requires_grad_(True)
            p = (n["mass"][:, None] * n["vel"]).detach().requires_grad_(True)
            f, t, h = self._energies(q, p, n["mass"], n["charge"], batch)
            dq, dp = torch.autograd.grad(h.sum(), (q, p), create_graph=create_graph)
        return dq, dp, f, t

    def forward(self, batch: GraphBatch, *, sample: bool = False, generator=None) -> Output:
        dHdq, dHdp, f, t = self.dynamics(batch, create_graph=self.training)
        n = batch.nodes
        acc = -dHdq / n["mass"][:, None]
        c = self.config
        penalty = f.new_zeros(())
        if c.velocity_weight > 0:
            penalty = penalty + c.velocity_weight * ((dHdp - n["vel"]).abs().sum(1).mean() / self.vel_scale)
        if c.energy_weight > 0:
            l2 = (f / self.pair_energy_scale).pow(2).mean() + (t / self.self_energy_scale).pow(2).mean()
            penalty = penalty + c.energy_weight * l2
        msgs = (f / self.pair_energy_scale)[:, None]
        summed = msgs.new_zeros(batch.n_nodes, 1).index_add_(0, batch.edge_index[1], msgs)
        return Output(pred=acc / self.out_scale, messages=msgs, raw=msgs, summed=summed, penalty=penalty)

    def predict(self, batch: GraphBatch) -> torch.Tensor:
        """Accelerations [V, D] in data units."""
        b = batch.to(self.device)
        dHdq = self.dynamics(b, create_graph=False)[0]
        return (-dHdq / b.nodes["mass"][:, None]).detach().to(batch.device)

    def velocities(self, batch: GraphBatch) -> torch.Tensor:
        """dq/dt = dH/dp [V, D] in data units (the data's velocities, when T is p^2/2m)."""
        b = batch.to(self.device)
        return self.dynamics(b, create_graph=False)[1].detach().to(batch.device)

    def edge_raw(self, batch: GraphBatch, edge_feats=None) -> torch.Tensor:
        """Normalised symmetric pair energies [E, 1] (what the message recorder reads)."""
        with torch.no_grad():
            u = self.symmetric_pair_energy(self.problem.edge_features(batch))
        return (u / self.pair_energy_scale)[:, None]

    def node_features(self, batch: GraphBatch) -> torch.Tensor:
        return self.problem.node_features(batch)

    def matmul_flops(self, n_nodes: int, n_edges: int) -> int:
        """FLOPs of the MLP products of one evaluation of H (its gradient is ~2x, training ~3x more)."""
        return self.pair_model.matmul_flops(n_edges) + self.self_model.matmul_flops(n_nodes)
