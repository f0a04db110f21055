"""A plain multilayer perceptron with a configurable width, depth and activation."""

from __future__ import annotations

from torch import nn

from symdistill.errors import SymdistillError, unknown_name

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus}


class MLP(nn.Sequential):
    """``layers`` hidden layers of ``hidden`` units, each followed by ``activation``; a linear output.

    Shapes:
        input: [*, n_in]  ->  output: [*, n_out]
    """

    def __init__(self, n_in: int, n_out: int, hidden: int = 300, layers: int = 3, activation: str = "relu"):
        if activation not in ACTIVATIONS:
            raise unknown_name("activation", activation, ACTIVATIONS)
        if hidden < 1 or layers < 1:
            raise SymdistillError(f"An MLP needs hidden >= 1 and layers >= 1 (got hidden={hidden}, layers={layers})")
        mods: list[nn.Module] = []
        width = n_in
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        mods.append(nn.Linear(width, n_out))
        super().__init__(*mods)

    def matmul_flops(self, rows: int) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward pass over ``rows`` inputs."""
        return sum(2 * rows * m.in_features * m.out_features for m in self if isinstance(m, nn.Linear))
