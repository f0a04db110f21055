"""The halo GN and its training: shapes, invariance over neighbours, recording, learning a known target,
streaming == materialised training, exact resume, DDP (2 gloo processes) == one process."""

import numpy as np
import pytest
import torch

from symdistill.cosmology.ddp import launch_local
from symdistill.cosmology.graph import HaloBatch, HaloGraph, StreamingGraph, toy_catalogue
from symdistill.cosmology.model import PAPER_PRESET, HaloGN, message_std, record
from symdistill.cosmology.train import HaloTrainConfig, load_model, train_halo_gn
from symdistill.errors import SymdistillError
from symdistill.train import checkpoint as ckpt

QUIET = dict(progress=False, log=lambda *a: None)
TRAIN, VAL = np.arange(240), np.arange(240, 300)


@pytest.fixture(scope="module")
def cat():
    return toy_catalogue(300, 200.0, 50.0, seed=1, velocities=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config(**kw):
    return HaloTrainConfig(**{"hidden": 32, "msg_dim": 8, "batch_size": 32, "epochs": 4, "lr": 3e-3, "threads": 1,
                               "device": "cpu", **kw})  # CUDA's index_add_ is not deterministic: exact tests on CPU


def model_for(cat, **kw):
    torch.manual_seed(0)
    return HaloGN(**{"hidden": 32, "msg_dim": 8, **kw}).init_scales(cat.delta, 20.0)


def test_shapes_and_velocity_inputs(cat):
    b = HaloGraph.build(cat, 50.0).batch(np.arange(10))
    for use_velocity, extra in ((False, 0), ("speed", 1), ("vector", 3)):
        model = model_for(cat, use_velocity=use_velocity)
        delta_hat, messages = model(b)
        assert delta_hat.shape == (10,) and messages.shape == (b.n_edges, 8)
        assert model.node_inputs(b, model.aggregate(b, messages)).shape == (10, 1 + extra + 8)


def test_prediction_invariant_to_the_order_of_neighbours_and_equivariant_to_receivers(cat):
    model = model_for(cat)
    b = HaloGraph.build(cat, 50.0).batch(np.arange(20))
    perm = torch.randperm(b.n_edges, generator=torch.Generator().manual_seed(0))
    shuffled = HaloBatch(**{**vars(b), **{k: getattr(b, k)[perm] for k in
                                         ("edge_receiver", "senders", "distance", "mass_sender")}})
    with torch.no_grad():
        assert torch.allclose(model(b)[0], model(shuffled)[0], rtol=1e-5, atol=1e-6)
        reversed_ = HaloGraph.build(cat, 50.0).batch(np.arange(20)[::-1].copy())
        assert torch.allclose(model(reversed_)[0], model(b)[0].flip(0), rtol=1e-5, atol=1e-6)


def test_recording_holds_every_edge_and_the_node_model_io(cat):
    model = model_for(cat)
    graph = StreamingGraph(cat, 50.0)
    rec = record(model, graph, np.arange(30), chunk_edges=100)
    e, n = rec.edges, rec.nodes
    assert e["messages"].shape == (len(e["sender"]), 8) and len(n["receiver"]) == 30
    assert set(e) == {"receiver", "sender", "mass_sender", "distance", "mass_receiver", "messages"}
    sums = np.zeros((30, 8))
    np.add.at(sums, e["receiver"], e["messages"])
    assert np.allclose(sums, n["message_sum"], atol=1e-5)
    assert np.allclose(n["delta_hat"], model.predict(graph.batch(np.arange(30))).numpy(), atol=1e-6)
    assert np.allclose(rec.component_std, e["messages"].std(0), rtol=1e-4)
    assert rec.top_component == int(np.argmax(e["messages"].std(0))) == rec.ranked_components()[0]
    assert np.allclose(message_std(model, graph, np.arange(30), chunk_edges=64), rec.component_std, rtol=1e-6)
    assert record(model, graph, np.arange(5), components=[rec.top_component]).edges["messages"].shape[1] == 1


def test_config_round_trip_presets_and_unknown_keys():
    c = HaloTrainConfig.preset("paper", epochs=3)
    assert (c.hidden, c.msg_dim, c.l1, c.epochs) == (PAPER_PRESET["hidden"], 100, 1e-2, 3)
    assert HaloTrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(SymdistillError, match="Did you mean 'batch_size'"):
        HaloTrainConfig.from_dict({"batch_sise": 3})
    with pytest.raises(SymdistillError, match=r"`lr` must be > 0 \(got -1\)"):
        HaloTrainConfig(lr=-1)


def test_training_learns_a_known_function_of_the_neighbours(cat):
    config = HaloTrainConfig(hidden=64, batch_size=32, epochs=30, lr=3e-3, threads=1, device="cpu")
    _, history = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, **QUIET)
    constant = np.mean(np.abs(cat.delta[VAL] - np.median(cat.delta[TRAIN])))
    assert history[0]["val_mae"] > 0.9 * constant
    assert history[-1]["val_mae"] < 0.7 * constant
    assert history[-1]["train_penalty"] < history[0]["train_penalty"]  # the L1 term is felt


def test_streaming_and_materialised_training_give_the_same_model(cat):
    config = small_config(epochs=2)
    a, ha = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, **QUIET)
    b, hb = train_halo_gn(HaloGraph.build(cat, 50.0), config=config, train_index=TRAIN, val_index=VAL, **QUIET)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert [r["val_mae"] for r in ha] == [r["val_mae"] for r in hb]


def test_killed_training_resumes_from_checkpoint_exactly(cat, tmp_path):
    config = small_config(epochs=4)
    whole, h_whole = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "a", **QUIET)
    _, h2 = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "b", max_epochs=2, **QUIET)
    assert len(h2) == 2 and not (tmp_path / "b" / ckpt.MODEL).exists()
    # and a stop in the middle of epoch 3 (the time budget spent after one step)
    train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "b", time_budget=1e-9, **QUIET)
    assert ckpt.load(tmp_path / "b" / ckpt.CHECKPOINT)["pos"] == 1
    resumed, h4 = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "b", **QUIET)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    assert [r["val_mae"] for r in h4] == [r["val_mae"] for r in h_whole]
    again, h_again = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "b", **QUIET)
    assert h_again == h4 and torch.equal(again.edge_mlp[0].weight, whole.edge_mlp[0].weight)  # finished: no step
    loaded, saved_config, _ = load_model(tmp_path / "b" / ckpt.MODEL)
    assert saved_config == config and torch.equal(loaded.edge_mlp[0].weight, whole.edge_mlp[0].weight)
    with pytest.raises(SymdistillError, match="holds another run .*`lr`"):
        train_halo_gn(cat, config=small_config(epochs=4, lr=1e-3), train_index=TRAIN, val_index=VAL,
                      out=tmp_path / "b", **QUIET)


def test_two_ddp_processes_train_the_same_model_as_one(cat, tmp_path):
    config = small_config(epochs=2)
    one, h1 = train_halo_gn(cat, config=config, train_index=TRAIN, val_index=VAL, **QUIET)
    two, h2 = launch_local(cat, config=config, train_index=TRAIN, val_index=VAL, out=tmp_path / "ddp", nprocs=2)
    # the same global batches and gradients; only the order of floating-point sums differs
    for k, v in one.state_dict().items():
        assert torch.allclose(v, two.state_dict()[k], rtol=1e-4, atol=1e-5), k
    assert np.allclose([r["val_mae"] for r in h1], [r["val_mae"] for r in h2], rtol=1e-4)
    assert np.allclose([r["train_loss"] for r in h1], [r["train_loss"] for r in h2], rtol=1e-4)
