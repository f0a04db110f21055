"""Train: the training loop, checkpoints, run folders and the metrics the distillation stage reads.

Public API for later stages::

    from symdistill.train import load_run, record_messages, record_nodes, top_components, force_r2
"""

from symdistill.train.config import DataConfig, RunConfig, TrainConfig, preset
from symdistill.train.data import GraphData, load_graphs
from symdistill.train.loop import train
from symdistill.train.metrics import (
    MessageRecord, active_components, force_r2, pair_forces, record_messages, record_nodes, test_mae,
    top_components,
)
from symdistill.train.run import Run, evaluate, load_run

__all__ = [
    "DataConfig", "GraphData", "MessageRecord", "Run", "RunConfig", "TrainConfig", "active_components",
    "evaluate", "force_r2", "load_graphs", "load_run", "pair_forces", "preset", "record_messages",
    "record_nodes", "test_mae", "top_components", "train",
]
