"""The head of a run report: a title that names the system, model, law and verdict; one verdict line
built from the final law's checks alone (so it cannot contradict itself); the checks one click away;
and what a reader needs to reproduce the run (system, dimension, bodies, model, seed, date, versions,
wall time per stage)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from symdistill.io import read_json
from symdistill.report.page import Report
from symdistill.simulate import open_dataset
from symdistill.simulate.potentials import Law

#: The stages in the order they run (distill.json stores its stage times sorted by name).
_STAGES = ("simulate", "train", "load and record", "edge search", "node search", "selection", "refit and snap",
           "verify and compare")
_VERSIONS = ("symdistill", "python", "torch", "numpy", "sympy", "pyoperon")


@dataclass
class RunFacts:
    """What the header states about a run folder; every field may be missing (None)."""

    law: Law | None = None
    system: str = "own data"
    dim: int | None = None
    n_bodies: int | None = None
    n_sims: int | None = None
    model: str | None = None
    seed: int | None = None
    steps: int | None = None
    versions: dict = field(default_factory=dict)
    date: str | None = None
    stage_seconds: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def run_facts(run: Path, distill: dict | None, history: dict) -> RunFacts:
    """Gather the header's facts from the run folder (config.json, the data file, distill.json, the
    history) and the pipeline record one folder up, when there is one."""
    saved = _read_json(run / "config.json")
    config = saved.get("config", {})
    data_path = Path(config.get("data", {}).get("path") or "")
    facts = RunFacts(versions=saved.get("versions", {}), seed=saved.get("seed"),
                     model=config.get("model", {}).get("variant"), steps=config.get("train", {}).get("total_steps"))
    if data_path.is_file():
        with open_dataset(data_path) as ds:
            facts.law, facts.dim, facts.n_bodies, facts.n_sims = ds.law(), ds.dim, ds.n_bodies, ds.n_sims
        facts.system = _system_name(facts.law, data_path)
    else:
        pipe = _read_json(run.parent / "pipeline.json").get("config", {})
        facts.system = pipe.get("system") or (f"U = {pipe['potential']}" if pipe.get("potential") else facts.system)
        facts.dim, facts.n_bodies, facts.n_sims = pipe.get("dim"), pipe.get("n_bodies"), pipe.get("n_sims")
    if distill:
        facts.dim = distill.get("dim", facts.dim)
        facts.model = distill.get("model", facts.model)
        stamp = (run / "distill.json").stat().st_mtime
        facts.date = dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts.stage_seconds.update(_read_json(run.parent / "pipeline.json").get("stage_seconds") or {})
    if history.get("seconds"):
        facts.stage_seconds["train"] = float(history["seconds"][-1])
    facts.stage_seconds.update((distill or {}).get("stage_seconds") or {})
    return facts


def _system_name(law: Law | None, data_path: Path) -> str:
    if law is None:
        return f"own data ({data_path.name})"
    return law.name if law.builtin else f"U = {law.name}"


def verdict(distill: dict) -> tuple[str, str, str]:
    """(word, tone, reason) of the final law, from its strict checks only."""
    v = distill.get("verification") or {}
    checks = list(v.get("checks") or []) + list(v.get("exact_checks") or [])
    if distill.get("recovered") is None:
        return "no ground truth", "partial", "the data file names no law, so the formula is judged by its fit alone"
    if distill["recovered"]:
        spread = v.get("ratio_spread")
        within = "" if spread is None else f": discovered / true is constant within {spread:.2g} on a grid wider than the data"
        return "exact", "good", f"all {len(checks)} checks passed{within}"
    first = next((c for c in v.get("exact_checks") or [] if not c["passed"]), None)
    first = first or next((c for c in v.get("checks") or [] if not c["passed"]), None)
    word, tone = ("fits, not exact", "partial") if distill.get("fits") else ("not recovered", "bad")
    if first is None:
        return word, tone, "no check failed, yet the law was not judged exact (see the checks)"
    detail = f", {first['detail']}" if first.get("detail") else ""
    return word, tone, f"check `{first['name']}` failed ({_short(first['value'])} against {_short(first['threshold'])}{detail})"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def law_label(formula: str, max_chars: int = 60) -> str:
    """The force law without its constant (``F = -k (r - 1) r̂,  k = 2`` -> ``F = -k (r - 1) r̂``),
    cut to ``max_chars`` (the verdict line and the law table give it in full)."""
    law = " ".join(formula.split(",  k =")[0].split())
    return law if len(law) <= max_chars else law[: max_chars - 1].rstrip() + "…"


def title(facts: RunFacts, distill: dict | None) -> str:
    place = f"{facts.system} {facts.dim}D" if facts.dim else facts.system
    model = f", {facts.model}" if facts.model else ""
    if not distill:
        return f"{place}{model}: trained, not yet distilled"
    return f"{place}{model}: {law_label(distill['formula'])} — {verdict(distill)[0]}"


def write_header(rep: Report, facts: RunFacts, distill: dict | None) -> None:
    """The verdict line, the folded evidence, and the run's facts."""
    if distill:
        word, tone, reason = verdict(distill)
        rep.verdict(f"Final law {distill['formula']}: {word} ({reason}).", tone)
        _evidence(rep, distill)
    rep.table(["run", ""], _fact_rows(facts))


def _evidence(rep: Report, distill: dict) -> None:
    v = distill.get("verification") or {}
    header = ["check", "passed", "value", "threshold", "detail"]
    row = lambda c: [c["name"], bool(c["passed"]), c["value"], c["threshold"], c.get("detail", "")]  # noqa: E731
    tables = [(title, header, [row(c) for c in v.get(key) or []])
              for key, title in (("checks", "fits the data (lenient, on the recorded edges)"),
                                 ("exact_checks", "exact (strict, on a grid wider than the data)")) if v.get(key)]
    searched = ((distill.get("search") or {}).get("verification") or {}).get("summary")
    if searched:
        tables.append(("the law as searched, before the refit and snapping", ["verdict"], [[searched]]))
    if not tables:
        return
    checks = [rows for _, head, rows in tables if head is header]  # not the searched law's one-line verdict
    n = sum(len(rows) for rows in checks)
    passed = sum(1 for rows in checks for r in rows if r[1] is True)
    rep.details(f"Evidence: {passed} of {n} checks passed (click to show)", tables)


def _fact_rows(f: RunFacts) -> list[list]:
    law = "unknown" if f.law is None or not f.law.has_truth else f"U(r) = {f.law.energy}"
    rows = [["system", f.system], ["true pair potential", law], ["dimension", f.dim],
            ["bodies", f.n_bodies], ["simulations (training file)", f.n_sims], ["model", f.model],
            ["seed", f.seed], ["training steps", f.steps], ["distilled", f.date]]
    if f.stage_seconds:
        total = sum(f.stage_seconds.values())
        order = sorted(f.stage_seconds, key=lambda k: _STAGES.index(k) if k in _STAGES else len(_STAGES))
        rows.append(["wall time per stage", ", ".join(f"{k} {f.stage_seconds[k]:.0f} s" for k in order)
                     + f" (total {total:.0f} s" + (", not counting the simulation)" if "simulate" not in f.stage_seconds else ")")])
    rows.append(["versions", ", ".join(f"{k} {f.versions[k]}" for k in _VERSIONS if k in f.versions)])
    return [r for r in rows if r[1] is not None]
