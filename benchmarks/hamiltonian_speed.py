"""Training step rate of the Hamiltonian network against the l1 message network, side by side in one
process on the same batches (spring-2D, n = 4, batch 512): at the pipeline's defaults (hamiltonian:
Softplus, 64 hidden units; l1: ReLU, 128) and at equal width. Prints steps/s and the ratios.

    .venv/bin/python benchmarks/hamiltonian_speed.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from symdistill.models import ModelConfig, build_model
from symdistill.simulate import SimulationConfig, simulate_to_file
from symdistill.train import steps as st
from symdistill.train.config import TrainConfig
from symdistill.train.data import load_graphs

MODELS = {
    "l1 (ReLU, 128)": ModelConfig(variant="l1"),
    "hamiltonian (Softplus, 64): default": ModelConfig(variant="hamiltonian", activation="softplus", hidden=64),
    "hamiltonian (Softplus, 128)": ModelConfig(variant="hamiltonian", activation="softplus", hidden=128),
}


def main(rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate_to_file(Path(tmp) / "spring.h5", "spring", config=SimulationConfig(n_sims=200, n_steps=100))
        data = load_graphs(path)
    t = TrainConfig(batch_size=512)
    rates: dict[str, list[float]] = {k: [] for k in MODELS}
    for _ in range(rounds):  # interleaved, so a load change hits every model alike
        for name, cfg in MODELS.items():
            torch.manual_seed(0)
            model = build_model(cfg, 2).fit_scales(data.batch(slice(0, 4096)))
            rates[name].append(st.measure_step_rate(model, st.make_optimizer(model, t), data, 512, t, steps=20))
    base = max(rates["l1 (ReLU, 128)"])
    print(f"torch threads: {torch.get_num_threads()}")
    for name, r in rates.items():
        print(f"{name:40s} {max(r):7.1f} steps/s (best of {rounds})   x{max(r) / base:.2f} of l1")


if __name__ == "__main__":
    main()
