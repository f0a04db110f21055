"""Hamiltonian benchmark (issue 14): `symdistill run --model hamiltonian` with its defaults, judged by
the strict energy verdict, with rollouts beside an `l1` message network and the Table-3 column.

    .venv/bin/python benchmarks/hamiltonian.py --out runs/hamiltonian                  # the 8 paper rows
    .venv/bin/python benchmarks/hamiltonian.py --cases spring-2d --table3 --out runs/hamiltonian
    .venv/bin/python benchmarks/hamiltonian.py --set user --out runs/hamiltonian       # potentials as strings

Per case: the run's printed energies and verdict (pair exact, kinetic exact), its seconds, the energy
R^2 of the network, network and formula MAE; with ``--table3`` also standard, bottleneck, l1 and kl
trained on the same files with the same schedule (the pipeline's counted steps), their test MAE
beside the hamiltonian's and the paper's (PAPER.md §5, where it gives the row), and a rollout of the
l1 network from the same held-out initial states as the Hamiltonian models. Run folders are records:
a re-run skips finished work. Writes ``hamiltonian.json`` and ``hamiltonian.md`` in --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from symdistill.distill.energy_verify import verify_energy
from symdistill.io import read_json, write_json, write_text
from symdistill.pipeline import PipelineConfig, network_config, run_pipeline
from symdistill.simulate.catalogue import HELD_OUT, Case

PAPER_ROWS = tuple(Case(f"{s}-{d}d", d, system=s) for s in ("spring", "r1", "r2", "charge") for d in (2, 3))
#: Potentials given as strings (the held-out laws of the force benchmark that are conservative).
USER_ROWS = HELD_OUT
EXTRA_ROWS = (Case("discontinuous-2d", 2, system="discontinuous", note="a jump in U: reported as it is"),)
SETS = {"paper": PAPER_ROWS, "user": USER_ROWS, "extra": EXTRA_ROWS}
#: Table 3 of the paper (test loss; Standard / Bottleneck / L1 / KL / FlatHGN), where PAPER.md gives the row.
PAPER_TABLE3 = {"spring-2d": (0.047, 0.046, 0.045, 1.659, 0.016), "r2-2d": (1.613, 1.640, 1.184, 9.252, 1.284),
                "charge-2d": (48.7, 50.0, 51.9, 59.9, 55.0)}
MESSAGE_MODELS = ("standard", "bottleneck", "l1", "kl")


def run_case(case: Case, out: Path, table3: bool, log) -> dict:
    folder = out / case.name
    c = PipelineConfig(system=case.system, potential=case.potential, dim=case.dim, model="hamiltonian")
    t0 = time.perf_counter()
    result = run_pipeline(folder / "hamiltonian", c, progress=False, log=lambda *a, **k: None)
    d = read_json(folder / "hamiltonian" / "train" / "distill.json", "distillation")
    v = d.get("verification") or {}
    law = case.law()
    row = {"case": case.name, "law": case.system or case.potential, "formula": result["formula"],
           "truth": result["truth"], "exact": result["recovered"],
           # each energy alone: the pair against the truth; the kinetic beside the true pair energy
           "pair_exact": verify_energy(d["pair_energy"], law).exact,
           "kinetic_exact": verify_energy(law.energy, law, kinetic=d["kinetic_energy"]).exact,
           "summary": v.get("summary"), "searched": (d.get("search") or {}).get("formula"),
           "searched_exact": ((d.get("search") or {}).get("verification") or {}).get("exact"),
           "seconds": result["seconds"], "train_seconds": _train_seconds(folder / "hamiltonian" / "train"),
           "distill_seconds": d.get("seconds"), "energy_r2": d.get("energy_r2"),
           "energy_r2_bulk": d.get("energy_r2_bulk"), "comparison": d.get("comparison"),
           "rollout": _rollout_summary(d.get("rollout"))}
    log(f"{case.name:18s} exact {str(row['exact']):5s} {row['formula']}  ({row['seconds']:.0f} s)")
    if table3:
        row["table3"], row["rollout_l1"] = table3_row(case, c, folder, d, log)
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def _train_seconds(run_dir: Path) -> float | None:
    """Seconds the training took (its history's last row), whenever it ran."""
    from symdistill.train.run import read_history
    rows = read_history(run_dir)
    return float(rows[-1]["seconds"]) if rows else None


def _rollout_summary(roll: dict | None) -> dict | None:
    if not roll:
        return None
    keys = ("final_position_error", "max_own_energy_drift", "max_true_energy_drift", "blow_ups")
    return {name: {k: m.get(k) for k in keys} for name, m in roll["models"].items()}


def table3_row(case: Case, c: PipelineConfig, folder: Path, distilled: dict, log) -> tuple[dict, dict | None]:
    """Test MAE of the four message models trained on the hamiltonian run's own files, and the l1
    network rolled out from the same held-out states as the Hamiltonian models."""
    from symdistill.distill.rollout import NetworkDynamics, compare_rollouts, initial_states
    from symdistill.distill.energy import ROLLOUT_SIMS, ROLLOUT_STEPS
    from symdistill.train.data import load_graphs
    from symdistill.train.loop import train
    from symdistill.train.metrics import test_mae
    from symdistill.train.run import load_run

    data = folder / "hamiltonian" / "data"
    test = load_graphs(data / "test.h5")
    losses = {"hamiltonian": test_mae(load_run(folder / "hamiltonian" / "train").model, test)}
    for model in MESSAGE_MODELS:
        run_dir = folder / model
        train(network_config(c, data / "train.h5", data / "test.h5", model=model), run_dir, progress=False,
              log=lambda *a, **k: None)
        losses[model] = test_mae(load_run(run_dir).model, test)
    log(f"{case.name:18s} test MAE " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items()))
    roll = None
    if distilled.get("rollout") and case.system != "discontinuous":
        start = initial_states(data / "test.h5", ROLLOUT_SIMS, seed=0)
        l1 = NetworkDynamics(load_run(folder / "l1").model)
        opts = start.options() | {"n_steps": ROLLOUT_STEPS}
        roll = _rollout_summary(compare_rollouts({"l1 network": l1}, start.law, *start.states(), **opts))
    return losses, roll


def markdown(rows: list[dict]) -> str:
    lines = ["| case | exact (both) | pair | kinetic | printed energies | searched exact | energy R² pair: all / bulk "
             "| train s | distill s |", "|---|---|---|---|---|---|---|---|---|"]
    yes = lambda x: "yes" if x else "no"  # noqa: E731
    for r in rows:
        r2 = [(r.get(k) or {}).get("pair") for k in ("energy_r2", "energy_r2_bulk")]
        lines.append(f"| {r['case']} | {yes(r['exact'])} | {yes(r['pair_exact'])} | {yes(r['kinetic_exact'])} | "
                     f"`{r['formula']}` | {yes(r['searched_exact'])} | {' / '.join(_g(x, 4) for x in r2)} | "
                     f"{_g(r.get('train_seconds'), 3)} | {_g(r.get('distill_seconds'), 3)} |")
    t3 = [r for r in rows if r.get("table3")]
    if t3:
        lines += ["", "| case | " + " | ".join((*MESSAGE_MODELS, "hamiltonian")) + " | paper (S/B/L1/KL/HGN) |",
                  "|---|" + "---|" * 6]
        for r in t3:
            paper = PAPER_TABLE3.get(r["case"])
            lines.append(f"| {r['case']} | " + " | ".join(f"{r['table3'][m]:.4g}" for m in (*MESSAGE_MODELS, "hamiltonian"))
                         + f" | {' / '.join(map(str, paper)) if paper else '-'} |")
    roll = [r for r in rows if r.get("rollout")]
    if roll:
        lines += ["", "| case | dynamics | position error at step 500 | max own-energy drift | max true-energy drift |",
                  "|---|---|---|---|---|"]
        for r in roll:
            entries = {**r["rollout"], **(r.get("rollout_l1") or {})}
            for name, m in entries.items():
                if name == "truth" and r.get("rollout_l1") and m is r["rollout_l1"].get("truth"):
                    continue
                lines.append(f"| {r['case']} | {name} | {_g(m['final_position_error'])} | "
                             f"{_g(m['max_own_energy_drift'])} | {_g(m['max_true_energy_drift'])} |")
    return "\n".join(lines) + "\n"


def _g(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/hamiltonian")
    p.add_argument("--set", default="paper", choices=sorted(SETS))
    p.add_argument("--cases", nargs="*", help="case names (default: every case of --set)")
    p.add_argument("--table3", action="store_true", help="also train the four message models (Table 3, rollouts)")
    a = p.parse_args()
    every = {c.name: c for s in SETS.values() for c in s}
    cases = [every[n] for n in a.cases] if a.cases else list(SETS[a.set])
    out = Path(a.out)
    path = out / "hamiltonian.json"
    done = {r["case"]: r for r in (read_json(path, "results")["rows"] if path.exists() else [])}
    for case in cases:
        done[case.name] = run_case(case, out, a.table3, print)
        write_json(path, {"rows": list(done.values())})
        write_text(out / "hamiltonian.md", markdown(list(done.values())))
    rows = [done[c.name] for c in cases]
    count = lambda key: f"{sum(bool(r[key]) for r in rows)}/{len(rows)}"  # noqa: E731
    print(f"exact energies (both): {count('exact')}; pair potential {count('pair_exact')}; kinetic {count('kinetic_exact')}")


if __name__ == "__main__":
    main()
