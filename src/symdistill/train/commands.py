"""CLI commands of the train stage: ``train`` and ``evaluate``. Defaults live in the config dataclasses."""

from __future__ import annotations


from symdistill.errors import SymdistillError
from symdistill.train.config import PRESETS, parse_value, preset

# CLI flag -> config key; a flag left out keeps the preset's value.
_FLAGS = {
    "data": "data.path", "test_data": "data.test_path", "model": "model.variant",
    "edge_inputs": "model.edge_inputs", "hidden": "model.hidden", "layers": "model.layers",
    "epochs": "train.epochs", "time_budget": "train.time_budget", "batch_size": "train.batch_size",
    "lr": "train.lr", "seed": "train.seed", "threads": "train.threads", "device": "train.device",
}


def config_from_args(args):
    overrides = {key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None}
    for item in args.set or []:
        if "=" not in item:
            raise SymdistillError(f"Expected --set KEY=VALUE (got {item!r})")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value.strip())
    if args.epochs is not None and args.time_budget is None:
        overrides["train.time_budget"] = None
    return with_model_defaults(preset(args.preset).replace(**overrides), overrides)


def with_model_defaults(config, overrides: dict):
    """The hamiltonian model's own default activation, Softplus (smooth second derivatives), unless
    one was asked for."""
    if config.model.variant == "hamiltonian" and not {"model.activation", "activation"} & set(overrides):
        return config.replace(**{"model.activation": "softplus"})
    return config


def _train(args) -> int:
    from symdistill.train.loop import train

    if args.resume:
        given = [f"--{f.replace('_', '-')}" for f in _FLAGS if getattr(args, f) is not None] + (["--set"] if args.set else [])
        if given:
            raise SymdistillError(f"--resume continues the saved config; drop {', '.join(given)}")
        train(None, args.out, resume=True, progress=not args.quiet)
        return 0
    if args.data is None:
        raise SymdistillError("Give --data FILE (a dataset from `symdistill simulate`), or --resume")
    train(config_from_args(args), args.out, progress=not args.quiet)
    return 0


def _evaluate(args) -> int:
    from symdistill.train.metrics import BULK_LEFT_OUT
    from symdistill.train.run import dumps, evaluate

    result = evaluate(args.run, args.data)
    if args.json:
        print(dumps(result))
    else:
        r2 = result["force_r2"]
        print(f"{result['run']}: {result['model']} ({result['edge_inputs']} edge inputs) on {result['data']}, "
              f"{result['n_graphs']} graphs")
        print(f"  test MAE (accelerations): {result['test_mae']:.5g}")
        if result.get("energy_r2"):
            e = result["energy_r2"]
            print(f"  energy R^2 (gauge-fixed, against the truth): pair {e['pair']:.4f}, kinetic {e['kinetic']:.4f}")
            return 0
        print("  force R^2 of top components " + (
            ", ".join(f"#{c}: {x:.4f}" for c, x in zip(result["components"], r2)) if r2 is not None
            else "unavailable (unknown law)"))
        if r2 is not None:
            print(f"  the same without {BULK_LEFT_OUT} (near-collisions): "
                  + ", ".join(f"#{c}: {x:.4f}" for c, x in zip(result["components"], result["force_r2_bulk"])))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a graph network on a dataset and write a run folder",
                       description="Train a graph network (PAPER.md §3). Defaults: the `fast` preset.")
    p.add_argument("--data", help="training dataset (.h5 from `symdistill simulate`)")
    p.add_argument("--test-data", help="test dataset simulated with another seed (for `evaluate`)")
    p.add_argument("--out", required=True, help="run folder to create (or to resume)")
    p.add_argument("--model", help="standard, bottleneck, l1, kl (message variants) or hamiltonian (FlatHGN: "
                                   "learns the energy)")
    p.add_argument("--edge-inputs", help="relative (default) or paper")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int)
    budget.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock training budget")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="OneCycle maximum learning rate")
    p.add_argument("--hidden", type=int, help="units per hidden layer (paper: 300)")
    p.add_argument("--layers", type=int, help="hidden layers per MLP (paper: 3)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N, or auto (CUDA when present)")
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS), help="starting config (default fast)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config option, e.g. --set model.l1_weight=0.02 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)

    p = sub.add_parser("evaluate", help="test MAE and force R^2 of a trained run")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--data", help="test dataset (default: the run's --test-data, else its validation split)")
    p.add_argument("--json", action="store_true", help="print a JSON object (test_mae, force_r2, ...)")
    p.set_defaults(handler=_evaluate)


__all__ = ["config_from_args", "register"]
