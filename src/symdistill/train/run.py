"""Reading a run folder back: the trained model, its config and data; evaluation on a test file."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from symdistill.errors import SymdistillError
from symdistill.models import GraphNetwork, HamiltonianNetwork, build_model
from symdistill.train import checkpoint as ckpt
from symdistill.train.config import RunConfig
from symdistill.train.data import load_graphs, split_sims
from symdistill.train.metrics import force_r2, record_messages, test_mae, top_components


@dataclass
class Run:
    """A loaded run. ``model`` is on CPU in eval mode; ``finished`` is False for a run loaded from
    its last epoch checkpoint (still training, or killed)."""

    path: Path
    model: GraphNetwork | HamiltonianNetwork
    config: RunConfig
    data_path: str
    test_path: str | None
    history: list[dict]
    finished: bool


def load_run(run_dir) -> Run:
    """Load a run folder written by :func:`symdistill.train.train`: the final model if the run
    finished, else its last checkpoint."""
    path = Path(run_dir)
    if not (path / ckpt.CONFIG).exists():
        raise SymdistillError(f"{path} is not a run folder (no {ckpt.CONFIG}); create one with `symdistill train`")
    finished = (path / ckpt.MODEL).exists()
    source = path / (ckpt.MODEL if finished else ckpt.CHECKPOINT)
    if not source.exists():
        raise SymdistillError(f"{path} has no trained model yet (no {ckpt.MODEL} or {ckpt.CHECKPOINT}): "
                              f"train it with `symdistill train --out {path} ...`")
    state = ckpt.load(source)
    try:
        config = RunConfig.from_saved(state["config"])
        dim = int(state.get("dim") or _dim_from(state["model"]))
        model = build_model(config.model, dim)
        model.load_state_dict(state["model"])
    except SymdistillError as e:
        raise SymdistillError(f"{source} holds an invalid config ({e})") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise SymdistillError(f"{source} is not a model of this version of symdistill "
                              f"({e.__class__.__name__}: {' '.join(str(e).split())[:80]}): train the run again") from None
    model.eval()
    return Run(path, model, config, config.data.path, config.data.test_path, read_history(path), finished)


def _dim_from(sd: dict) -> int:
    last = [k for k in sd if k.startswith("node_model.") and k.endswith(".bias")][-1]
    return int(sd[last].shape[0])


def read_history(run_dir) -> list[dict]:
    p = Path(run_dir) / ckpt.HISTORY
    if not p.exists():
        return []
    try:
        with p.open() as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            r["force_r2"] = [float(x) for x in r["force_r2"].split()]
    except (UnicodeDecodeError, csv.Error, KeyError, ValueError, AttributeError):
        return []  # a damaged history is only a missing curve: the model is what counts
    return rows


def evaluate(run_dir, data_path=None, *, max_graphs: int | None = 20000, max_edges: int = 200_000) -> dict:
    """Test MAE on accelerations and force R^2 of the top components on a held-out file.

    ``data_path`` defaults to the run's test file, else its validation simulations.
    """
    run = load_run(run_dir)
    c = run.config.data
    path = data_path or run.test_path
    if path:
        data, source = load_graphs(path, step_stride=c.step_stride), str(path)
    else:
        _, val = split_sims(c)
        data, source = load_graphs(c.path, val, step_stride=c.step_stride), f"{c.path} (validation simulations)"
    if data.dim != run.model.dim:
        raise SymdistillError(f"Expected {run.model.dim}D data for this run (got {data.dim}D in {path})")
    if max_graphs is not None and len(data) > max_graphs:
        data = data.subset(torch.linspace(0, len(data) - 1, max_graphs).long())
    if getattr(run.model, "kind", None) == "hamiltonian":  # energies, not messages
        from symdistill.train.energy_metrics import energy_r2, record_energies
        pair, kinetic = energy_r2(record_energies(run.model, data, max_graphs=max_edges // max(1, data.n_bodies ** 2)))
        return {"run": str(run.path), "data": source, "n_graphs": len(data), "finished": run.finished,
                "test_mae": test_mae(run.model, data), "force_r2": None, "force_r2_bulk": None, "components": [],
                "energy_r2": {"pair": pair, "kinetic": kinetic}, "model": "hamiltonian",
                "edge_inputs": run.config.model.edge_inputs}
    rec = record_messages(run.model, data, max_edges=max_edges)
    comps = top_components(rec)
    return {
        "run": str(run.path), "data": source, "n_graphs": len(data), "finished": run.finished,
        "test_mae": test_mae(run.model, data),
        "force_r2": force_r2(rec, comps) if rec.forces is not None else None,
        "force_r2_bulk": force_r2(rec, comps, bulk=True) if rec.forces is not None else None,
        "components": [int(i) for i in comps],
        "model": run.config.model.variant, "edge_inputs": run.config.model.edge_inputs,
    }


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2)
