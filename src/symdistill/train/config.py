"""Run configuration: one frozen dataclass per concern, one place for each default.

A run's resolved config (these three, plus seed and versions) is saved in the run folder and in
every checkpoint. Unknown keys are errors with a suggestion.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field

from symdistill.errors import SymdistillError, check_positive, check_seed, unknown_name
from symdistill.models.network import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which graphs to train on. Validation is a split by simulation; the test set is another file."""

    path: str = ""
    test_path: str | None = None   # a file simulated with another seed (None: evaluate on validation)
    val_fraction: float = 0.1
    split_seed: int = 0
    max_sims: int | None = None    # use only the first max_sims simulations
    step_stride: int = 1           # keep every k-th saved state (the paper kept every 5th)
    eval_graphs: int = 2000        # validation graphs scored after every epoch

    def __post_init__(self):
        if not 0 <= self.val_fraction < 1:
            raise SymdistillError(f"`data.val_fraction` must be in [0, 1) (got {self.val_fraction})")
        check_positive("data.step_stride", self.step_stride)
        check_positive("data.eval_graphs", self.eval_graphs)
        check_positive("data.max_sims", self.max_sims, optional=True)
        check_seed("data.split_seed", self.split_seed)


LOSSES = ("relative", "mae")
PRECISIONS = ("fp32", "bf16")

#: Values for options that older run folders did not record (their behaviour then), so they load unchanged.
LEGACY = {"model": {"node_model": "mlp", "target_scale": "rms"}, "train": {"loss": "mae"}}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Adam + OneCycle; ``epochs`` or a wall-clock ``time_budget`` (seconds)."""

    batch_size: int = 512
    epochs: int = 20
    time_budget: float | None = None  # seconds; sets total_steps from a measured step rate
    max_steps: int | None = None      # with time_budget: at most this many steps (the budget is then a cap)
    steps_per_epoch: int | None = None  # None: one pass over the training graphs
    total_steps: int | None = None    # resolved at start (epochs x steps_per_epoch, or from the budget)
    lr: float = 1e-2                  # OneCycle maximum (1e-2 beat 3e-3 and 2e-2 in our runs)
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e5
    weight_decay: float = 1e-8
    augment_shift: float = 3.0        # std of the per-batch translation (paper edge inputs only)
    loss: str = "relative"            # "mae" (paper): per-node L1 error; "relative": the same divided by
    #   (per-node L1 norm of the target + loss_floor), so heavy-tailed laws do not train on their tails only
    loss_floor: float = 3.0           # in units of the model's target scale (median |acceleration|)
    precision: str = "fp32"           # "bf16": the forward pass under bfloat16 autocast (faster on CPUs
    #   with AMX/AVX-512 BF16); weights, optimiser and evaluation stay float32
    seed: int = 0
    threads: int | None = None        # torch threads (None: the faster of 1 and all, measured at the start)
    device: str = "cpu"               # "cpu" (the default, and what CI tests), "cuda", "cuda:N", or "auto"
    #   (CUDA when PyTorch sees a GPU). Results on a GPU are not bit-identical to the CPU's.

    def __post_init__(self):
        for name in ("batch_size", "epochs", "lr", "div_factor", "final_div_factor"):
            check_positive(f"train.{name}", getattr(self, name))
        for name in ("time_budget", "max_steps", "steps_per_epoch", "total_steps", "threads"):
            check_positive(f"train.{name}", getattr(self, name), optional=True)
        check_positive("train.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("train.augment_shift", self.augment_shift, allow_zero=True)
        if self.loss not in LOSSES:
            raise unknown_name("loss", self.loss, LOSSES)
        check_positive("train.loss_floor", self.loss_floor)
        if self.precision not in PRECISIONS:
            raise unknown_name("precision", self.precision, PRECISIONS)
        if not 0 < self.pct_start < 1:
            raise SymdistillError(f"`train.pct_start` must be in (0, 1) (got {self.pct_start})")
        check_seed("train.seed", self.seed)
        if not (self.device in ("cpu", "auto", "cuda") or self.device.startswith("cuda:")):
            raise SymdistillError(f"`train.device` must be cpu, cuda, cuda:N or auto (got {self.device!r})")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_saved(cls, d: dict) -> "RunConfig":
        """A config read from a run folder; options it predates get their old values (:data:`LEGACY`)."""
        d = {k: dict(v) for k, v in d.items()}
        for section, values in LEGACY.items():
            if section in d:
                for key, value in values.items():
                    d[section].setdefault(key, value)
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs = {}
        for key, value in d.items():
            if key not in sections:
                raise unknown_name("config section", key, sections)
            kwargs[key] = _make(sections[key], value, key)
        return cls(**kwargs)

    def replace(self, **dotted) -> "RunConfig":
        """``cfg.replace(**{"model.hidden": 128, "train.lr": 1e-3})``; a bare key is looked up in every section."""
        d = self.to_dict()
        for key, value in dotted.items():
            section, name = _locate(key)
            d[section][name] = value
        return RunConfig.from_dict(d)


def _make(cls, values: dict, section: str):
    names = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if k not in names:
            raise unknown_name(f"{section} option", k, names)
    check_types(cls, values, section)
    return cls(**values)


def check_types(cls, values: dict, section: str) -> None:
    """One-line error for a value of the wrong type (``--set model.l1_weight=abc``), by the field's annotation."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints.get(key)
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if value is None and type(None) in allowed:
            continue
        for kind, label, ok in ((bool, "true or false", lambda v: isinstance(v, bool)),
                                (int, "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                                (float, "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
                                (str, "a string", lambda v: isinstance(v, str))):
            if kind in allowed:
                if not ok(value):
                    none = " or none" if type(None) in allowed else ""
                    raise SymdistillError(f"`{section}.{key}` must be {label}{none} (got {value!r})")
                break


def _locate(key: str) -> tuple[str, str]:
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    if "." in key:
        section, name = key.split(".", 1)
        if section not in sections:
            raise unknown_name("config section", section, sections)
        if name not in {f.name for f in dataclasses.fields(sections[section])}:
            raise unknown_name(f"{section} option", name, [f.name for f in dataclasses.fields(sections[section])])
        return section, name
    hits = [s for s, c in sections.items() if key in {f.name for f in dataclasses.fields(c)}]
    if not hits:
        every = [f"{s}.{f.name}" for s, c in sections.items() for f in dataclasses.fields(c)]
        raise unknown_name("option", key, every)
    return hits[0], key


#: Named starting points. ``paper``: the reference architecture and optimiser (PAPER.md §3).
PRESETS: dict[str, dict] = {
    "fast": {},
    "paper": {"model.hidden": 300, "model.layers": 3, "model.l1_weight": 1e-2, "model.node_messages": "sum",
              "model.node_model": "mlp", "model.target_scale": "rms", "train.loss": "mae",
              "model.inverse_mass": False, "train.batch_size": 64, "train.lr": 1e-3,
              "train.epochs": 200, "train.steps_per_epoch": 5000, "data.step_stride": 5},
}


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise unknown_name("preset", name, PRESETS)
    return RunConfig().replace(**PRESETS[name])


def parse_value(text: str):
    """``--set key=value`` values: int, float, bool, none, or string."""
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text
