"""The cosmology experiment end to end (``symdistill cosmology run``), in one run folder.

    catalogue (generated, or read: --catalogue) -> halos.h5
    splits: 20% of halos held out at random; and, out of distribution, the halos with delta > 1 held out
    for each split: train the halo GN (network/ or network-ood/), record its top message component on
    every edge, SR on it and on the node model, compose and refit on the training halos
    (distill.json / distill-ood.json), fit the baselines on the same halos, score all on the held-out ones
    result.json (the tables), report.html (figures)

The held-out halos are never seen by the network, the searches or the refits: a formula is chosen
on a validation part of the training halos (:mod:`symdistill.cosmology.distill`). A killed run
resumes: the network from its checkpoint, finished stages from their files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from symdistill.errors import SymdistillError, check_positive, check_seed, unknown_name
from symdistill.io import atomic_path, check_output_folder, read_json, write_json
from symdistill.runfolder import claim
from symdistill.versions import versions

#: Training steps by default: epochs = TRAIN_STEPS / steps per epoch, within EPOCH_RANGE (33-34 epochs on the
#: default box; tiny is capped at 100 epochs, ~700 steps, for its 2-minute target; docs/benchmarks.md, "Issue 15").
TRAIN_STEPS = 2000
EPOCH_RANGE = (10, 100)
#: Evaluations of each formula search (counted, so a loaded machine finds the same formula; ~14 s each on
#: 2 quiet cores), and the seconds that cap it.
SR_EVALUATIONS = 200_000
SR_BUDGET = 120.0
#: Stage 3 chooses among the composed formulas by their error on the training halos of highest delta
#: (chosen on the development box, seed 0: see docs/benchmarks.md, "Issue 15").
VALIDATION = "top"
HALOS = "halos.h5"
RECORD = "cosmology.json"


@dataclass(frozen=True)
class CosmologyConfig:
    """The experiment. ``catalogue``: a halo file or Quijote folder (None: generate a box of ``size``
    with ``seed``). ``held_out``: fraction of halos held out at random. ``ood``: also run the
    out-of-distribution split (train on delta < ``ood_threshold``, evaluate above it)."""

    size: str = "default"
    catalogue: str | None = None
    snapshot: str | None = None        # the catalogue's particle snapshot, for delta (a Quijote snapdir_NNN)
    seed: int = 0
    preset: str = "default"
    epochs: int | None = None
    time_budget: float | None = None
    sr_budget: float | None = None
    sr_evaluations: int | None = None
    radius: float = 50.0
    velocity: bool = False             # the node model also reads the halo's speed |v_i|
    held_out: float = 0.2
    ood: bool = True
    ood_threshold: float = 1.0
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self):
        check_seed("seed", self.seed)
        check_positive("radius", self.radius)
        check_positive("time_budget", self.time_budget, optional=True)
        check_positive("sr_budget", self.sr_budget, optional=True)
        check_positive("epochs", self.epochs, optional=True)
        check_positive("sr_evaluations", self.sr_evaluations, optional=True)
        from symdistill.cosmology.generate import SIZES
        from symdistill.cosmology.model import PRESETS
        if self.preset not in PRESETS:
            raise unknown_name("preset", self.preset, PRESETS)
        if self.catalogue is None and self.size not in SIZES:
            raise unknown_name("size", self.size, SIZES)
        if not 0 < self.held_out < 1:
            raise SymdistillError(f"`held_out` must be a fraction between 0 and 1, e.g. 0.2 (got {self.held_out})")

    def train_config(self, n_fit: int):
        """The network's config for ``n_fit`` training halos (epochs: :data:`TRAIN_STEPS` steps by default)."""
        from symdistill.cosmology.train import HaloTrainConfig
        c = HaloTrainConfig.preset(self.preset, radius=self.radius, seed=self.seed, device=self.device,
                                   threads=self.threads, use_velocity="speed" if self.velocity else False)
        steps_per_epoch = -(-n_fit // c.batch_size)
        epochs = self.epochs or int(np.clip(-(-TRAIN_STEPS // steps_per_epoch), *EPOCH_RANGE))
        return replace(c, epochs=epochs)

    def distill_options(self):
        from symdistill.cosmology.distill import DistillOptions
        return DistillOptions(time_budget=self.sr_budget or SR_BUDGET,
                              max_evaluations=self.sr_evaluations or SR_EVALUATIONS, validation=VALIDATION,
                              seed=self.seed)


# ---- stages ------------------------------------------------------------------------------------------

def load_halos(out: Path, c: CosmologyConfig, *, progress: bool, log):
    """The run's catalogue: ``out/halos.h5`` when there, else generated (or read from ``c.catalogue``) and
    written there. A catalogue without delta is refused (the network has nothing to learn)."""
    from symdistill.cosmology.halos import load_catalogue, read_halos, write_halos
    path = out / HALOS
    if path.exists():
        return read_halos(path)
    if c.catalogue is not None:
        cat = load_catalogue(c.catalogue)
        if c.snapshot is not None:
            from symdistill.cosmology.snapshot import with_snapshot_delta
            cat = with_snapshot_delta(cat, c.snapshot)
        if not cat.has_delta:
            raise SymdistillError(f"{c.catalogue} has no overdensity `delta` per halo: add it (HDF5 layout, "
                                  "see `cosmology run --help`), give its particles with --snapshot snapdir_NNN, or "
                                  "generate a box with `cosmology simulate`")
    else:
        from symdistill.cosmology.generate import GeneratorConfig, generate
        cat = generate(GeneratorConfig.of_size(c.size, seed=c.seed), progress=progress, log=log)
    write_halos(path, cat)
    return cat


def splits(cat, c: CosmologyConfig) -> dict[str, dict[str, np.ndarray]]:
    """Halo indices: ``{"random": {"train", "test"}, "ood": {"train", "test"}}`` (seeded by ``c.seed``)."""
    n = len(cat)
    order = np.random.default_rng(c.seed).permutation(n)
    n_test = max(1, int(round(c.held_out * n)))
    out = {"random": {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}}
    if c.ood:
        high = cat.delta > c.ood_threshold
        out["ood"] = {"train": np.flatnonzero(~high), "test": np.flatnonzero(high)}
    for name, s in out.items():
        if len(s["train"]) < 20 or len(s["test"]) < 5:
            raise SymdistillError(f"too few halos for the {name} split ({len(s['train'])} to train, {len(s['test'])} "
                                  "held out): use a larger box (--size default)")
    return out


def _val_part(train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) halves of the training halos for the network's per-epoch score (90/10)."""
    rng = np.random.default_rng(seed + 1)
    perm = rng.permutation(train)
    k = max(1, len(train) // 10)
    return np.sort(perm[k:]), np.sort(perm[:k])


def train_network(out: Path, name: str, graph, split: dict, c: CosmologyConfig, *, progress: bool, log):
    from symdistill.cosmology.train import load_model, train_halo_gn
    folder = out / f"network{name}"
    if (folder / "model.pt").exists():
        model, _, history = load_model(folder / "model.pt")
        return model, history
    fit_idx, val_idx = _val_part(split["train"], c.seed)
    log(f"training the halo network{' (' + name.strip('-') + ')' if name else ''}: {len(fit_idx):,} halos, "
        f"{graph.n_edges:,} edges in all")
    model, history = train_halo_gn(graph, config=c.train_config(len(fit_idx)), train_index=fit_idx, val_index=val_idx,
                                   out=folder, progress=progress, time_budget=c.time_budget, log=log)
    return model, history


def distill_split(out: Path, name: str, cat, graph, model, history, split: dict, c: CosmologyConfig, *,
                  log) -> dict:
    """Record the network, distil its top message, fit the baselines; the split's table (and saved)."""
    from symdistill.cosmology import formulas as fm
    from symdistill.cosmology.distill import distill_cosmology
    from symdistill.cosmology.model import message_std, record
    path = out / f"distill{name}.json"
    if path.exists():
        return read_json(path, "distillation")
    train, test = split["train"], split["test"]
    top = int(np.argmax(message_std(model, graph, train)))
    rec = record(model, graph, None, components=[top])
    e, nodes = rec.edges, rec.nodes
    edges = fm.Edges(e["receiver"].astype(np.int64), e["sender"].astype(np.int64), e["distance"])
    mass = cat.mass
    node_out = np.full(len(cat), np.nan)
    node_out[nodes["receiver"]] = nodes["delta_hat"]
    t0 = time.perf_counter()
    log(f"distilling the top message component ({top}) into a formula")
    result = distill_cosmology(edges, mass, cat.delta, e["messages"][:, 0], train, node_output=node_out,
                               options=c.distill_options())
    seconds = time.perf_counter() - t0
    log("fitting the baselines on the same halos")
    models = {"constant": fm.ConstantModel(), "hand-designed": fm.HandDesigned(),
              "paper's form, refitted": fm.PaperForm(), "discovered (this run)": result.formula}
    table = fm.comparison_table(models, edges, mass, cat.delta, {"train": train, "test": test})
    rows = table.to_dict("records")
    net = {"model": "graph network", "formula": f"{model.__class__.__name__} ({c.preset} preset)",
           "n_constants": int(sum(p.numel() for p in model.parameters())),
           "mae_train": float(np.mean(np.abs(node_out[train] - cat.delta[train]))),
           "mae_test": float(np.mean(np.abs(node_out[test] - cat.delta[test])))}
    rows.append(net)
    d = {"split": name.strip("-") or "random", "n_train": int(len(train)), "n_test": int(len(test)),
         "top_component": top, "component_std": [float(v) for v in rec.component_std],
         "table": rows, "distillation": result.to_dict(), "distill_seconds": seconds,
         "epochs_run": len(history)}
    # the figures' data first: distill.json marks the stage done, so a run killed between the two keeps its figures
    _save_figure_data(out / f"predictions{name}.npz", cat, node_out, result.formula, models, edges, e, split)
    write_json(path, d)
    return d


def _save_figure_data(path: Path, cat, node_out, formula, models, edges, e, split) -> None:
    """What the report's figures need (no pickle: plain arrays)."""
    test = split["test"]
    preds = {k.split(" ")[0].replace("'", ""): m.predict(edges, cat.mass, test) for k, m in models.items()}
    from symdistill.cosmology.formulas import MASS_UNIT
    from symdistill.distill.pareto import evaluate
    n = min(20000, len(e["messages"]))
    pick = np.random.default_rng(0).choice(len(e["messages"]), n, replace=False)
    columns = {"M_j": e["mass_sender"][pick] / MASS_UNIT, "r": e["distance"][pick],
               "M_i": e["mass_receiver"][pick] / MASS_UNIT}
    f_pick = evaluate(formula.sympy()[0], columns) * np.ones(n)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, test=test, delta=cat.delta[test], network=node_out[test],
                     message=e["messages"][pick, 0], formula_edge=f_pick,
                     r=columns["r"], M_j=columns["M_j"],
                     **{f"pred_{k}": v for k, v in preds.items()})


# ---- commands ----------------------------------------------------------------------------------------

def _has_results(out: Path) -> bool:
    return any((out / p).exists() for p in (HALOS, "network", "result.json"))


def _open(out, c: CosmologyConfig, command: str, log):
    return claim(out, f"cosmology {command}", asdict(c), record=RECORD, key="config", log=log,
                 results=_has_results, extra={"versions": versions()})


def _prepare(out: Path, c: CosmologyConfig, progress: bool, log):
    from symdistill.cosmology.graph import HaloGraph
    if c.threads:
        import torch
        torch.set_num_threads(c.threads)
    cat = load_halos(out, c, progress=progress, log=log)
    log(cat.summary())
    return cat, HaloGraph.build(cat, c.radius), splits(cat, c)


def train_stage(out, c: CosmologyConfig, *, progress: bool = True, log=print) -> dict:
    """``cosmology train``: the catalogue and the in-distribution network of the run folder ``out``."""
    out = check_output_folder(Path(out))
    with _open(out, c, "train", log):
        cat, graph, sp = _prepare(out, c, progress, log)
        model, history = train_network(out, "", graph, sp["random"], c, progress=progress, log=log)
        from symdistill.cosmology.model import record
        rec = record(model, graph, sp["random"]["test"], components=[0])
        mae = float(np.mean(np.abs(rec.nodes["delta_hat"] - rec.nodes["delta"])))
        return {"test_mae": mae, "epochs": len(history), "n_halos": len(cat), "run": str(out)}


def distill_stage(run, *, progress: bool = True, log=print) -> dict:
    """``cosmology distill RUN``: formulas and the table from a run folder with a trained network."""
    run = Path(run)
    if not (run / RECORD).exists():
        raise SymdistillError(f"{run} is not a cosmology run folder (no {RECORD}): run `cosmology train --out {run}`")
    c = CosmologyConfig(**read_json(run / RECORD, "cosmology run")["config"])
    return run_cosmology(run, c, progress=progress, log=log, ood=False)


def run_cosmology(out, config: CosmologyConfig | None = None, *, progress: bool = True, log=print,
                  ood: bool | None = None) -> dict:
    """The whole experiment in the run folder ``out`` (module docstring); returns ``result.json``'s content."""
    c = config or CosmologyConfig()
    out = check_output_folder(Path(out))
    ood = c.ood if ood is None else ood
    t0 = time.perf_counter()
    with _open(out, c, "run", log) as existing:
        if existing and (out / "result.json").exists() and (ood is False or "ood" in read_json(out / "result.json")):
            log(f"{out} already holds this run, finished: its result is shown")
            return read_json(out / "result.json", "result")
        cat, graph, sp = _prepare(out, c, progress, log)
        result = {"config": asdict(c), "n_halos": len(cat), "n_edges": int(graph.n_edges),
                  "smoothing_radius": cat.meta.get("smoothing_radius"), "catalogue": cat.meta.get("source")}
        for name, key in (("", "random"), ("-ood", "ood")):
            if key == "ood" and not ood:
                continue
            model, history = train_network(out, name, graph, sp[key], c, progress=progress, log=log)
            result[key] = distill_split(out, name, cat, graph, model, history, sp[key], c, log=log)
        result["targets"] = targets(result)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        from symdistill.cosmology.report import write_report
        result["report"] = str(write_report(out, result))
        write_json(out / "result.json", result)
        return result


def _row(table: list[dict], model: str) -> dict:
    return next(r for r in table if r["model"].startswith(model))


def targets(result: dict) -> dict:
    """The issue's ratios: discovered / hand-designed and constant / discovered on the held-out halos, and
    out of distribution the discovered formula / the network."""
    t = {}
    rows = result["random"]["table"]
    disc, hand, const = _row(rows, "discovered")["mae_test"], _row(rows, "hand-designed")["mae_test"], \
        _row(rows, "constant")["mae_test"]
    t["discovered_over_hand_designed"] = disc / hand
    t["constant_over_discovered"] = const / disc
    if "ood" in result:
        rows = result["ood"]["table"]
        network = _row(rows, "graph network")["mae_test"]
        t["ood_discovered_over_network"] = _row(rows, "discovered")["mae_test"] / network
    return t


def format_table(result: dict) -> str:
    """The tables as text, as the CLI prints them."""
    lines = []
    for key, title in (("random", "held-out halos (random 20%)"), ("ood", "out of distribution (trained on delta < 1, "
                                                                            "scored on delta > 1)")):
        if key not in result:
            continue
        lines.append(f"  mean |delta - delta_hat|, {title}:")
        for r in result[key]["table"]:
            lines.append(f"    {r['model']:26s} train {r['mae_train']:.4f}   held out {r['mae_test']:.4f}")
        lines.append(f"    discovered: {result[key]['distillation']['formula']}")
    for k, v in result.get("targets", {}).items():
        lines.append(f"  {k.replace('_', ' ')}: {v:.3f}")
    return "\n".join(lines)
