"""Models: the message-passing graph network and its message variants (PAPER.md §3)."""

from symdistill.models.messages import VARIANTS, get_variant
from symdistill.models.mlp import ACTIVATIONS, MLP
from symdistill.models.network import GraphNetwork, ModelConfig, Output

__all__ = ["ACTIVATIONS", "MLP", "VARIANTS", "GraphNetwork", "ModelConfig", "Output", "get_variant"]
