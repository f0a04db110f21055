"""Models: the message-passing graph network and its message variants, and the Hamiltonian graph
network (PAPER.md §3)."""

from symdistill.models.hamiltonian import HamiltonianNetwork
from symdistill.models.messages import VARIANTS, get_variant
from symdistill.models.mlp import ACTIVATIONS, MLP
from symdistill.models.network import MODELS, GraphNetwork, ModelConfig, Output


def build_model(config: ModelConfig, dim: int):
    """The network a config names: :class:`HamiltonianNetwork` for ``variant="hamiltonian"``, else a
    :class:`GraphNetwork` with that message variant."""
    if config.variant == "hamiltonian":
        return HamiltonianNetwork(config, dim)
    return GraphNetwork(config, dim)


__all__ = ["ACTIVATIONS", "MLP", "MODELS", "VARIANTS", "GraphNetwork", "HamiltonianNetwork", "ModelConfig",
           "Output", "build_model", "get_variant"]
