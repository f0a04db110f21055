"""Models: the graph network's shapes, symmetries, variants and metrics."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs import GraphBatch, fully_connected
from symdistill.models import GraphNetwork, ModelConfig, get_variant
from symdistill.simulate import get_law, simulate
from symdistill.train.metrics import MessageRecord, force_r2, pair_forces, record_messages, top_components


def _batch(n_graphs=3, n=4, dim=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shape = (n_graphs, n, dim)
    pos, vel, acc = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(3))
    mass = torch.exp(torch.randn(n_graphs, n, generator=g, dtype=dtype))
    charge = torch.randn(n_graphs, n, generator=g, dtype=dtype)
    return GraphBatch.from_arrays(pos, vel, mass, charge, acc, dtype=dtype)


def _model(variant="l1", dim=2, edge_inputs="relative", seed=0, **kw):
    torch.manual_seed(seed)
    m = GraphNetwork(ModelConfig(variant=variant, edge_inputs=edge_inputs, hidden=16, layers=2, **kw), dim).double()
    m.fit_scales(_batch(8, dim=dim, seed=99))
    return m.eval()


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("variant,message_dim,raw_dim", [("standard", 100, 100), ("bottleneck", None, None),
                                                          ("l1", 100, 100), ("kl", 100, 200)])
def test_output_shapes(variant, message_dim, raw_dim, dim):
    b = _batch(3, n=5, dim=dim)
    out = _model(variant, dim)(b)
    m = message_dim or dim
    assert out.acc.shape == (15, dim)
    assert out.messages.shape == (3 * 5 * 4, m)
    assert out.raw.shape == (60, raw_dim or dim)
    assert out.summed.shape == (15, m) and out.penalty.shape == ()


def test_messages_invariant_to_translation():
    m = _model("l1")
    b = _batch()
    shifted = replace(b, nodes={**b.nodes, "pos": b.pos + torch.tensor([7.0, -3.0], dtype=b.pos.dtype)})
    assert torch.allclose(m(b).messages, m(shifted).messages, atol=1e-12)
    assert torch.allclose(m(b).acc, m(shifted).acc, atol=1e-12)


def test_paper_edge_inputs_are_not_translation_invariant():
    # the reason the paper needs translation augmentation (and the check above can fail)
    m = _model("l1", edge_inputs="paper")
    b = _batch()
    shifted = replace(b, nodes={**b.nodes, "pos": b.pos + 5.0})
    assert not torch.allclose(m(b).messages, m(shifted).messages, atol=1e-6)


@pytest.mark.parametrize("node_model", ["additive", "mlp"])
@pytest.mark.parametrize("edge_inputs", ["relative", "paper"])
def test_predictions_equivariant_to_node_permutation(edge_inputs, node_model):
    m = _model("standard", edge_inputs=edge_inputs, node_model=node_model)
    b = _batch(1, n=5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    pb = GraphBatch.fully_connected({k: v[perm] for k, v in b.nodes.items()}, n_bodies=5, targets={"acc": b.acc[perm]})
    assert torch.allclose(m(pb).acc, m(b).acc[perm], atol=1e-12)


@pytest.mark.parametrize("node_model", ["additive", "mlp"])
def test_batched_equals_one_graph_at_a_time(node_model):
    m = _model("kl", dim=3, node_model=node_model)
    b = _batch(4, n=4, dim=3)
    whole = m(b)
    for g in range(4):
        one = m(b.select_graphs([g]))
        assert torch.allclose(one.acc, whole.acc[4 * g: 4 * g + 4], atol=1e-12)
        assert torch.allclose(one.messages, whole.messages[12 * g: 12 * g + 12], atol=1e-12)


def test_scatter_aggregation_equals_reshape_sum():
    m = _model("standard")
    b = _batch(3)
    perm = torch.randperm(b.edge_index.shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = replace(b, edge_index=b.edge_index[:, perm], in_degree=None)
    assert torch.allclose(m(shuffled).acc, m(b).acc, atol=1e-12)


def test_l1_penalty_sees_every_edge():
    v = get_variant("l1", 0.01)
    raw = torch.zeros(24, 100, dtype=torch.float64)
    raw[-1, 5] = 2.4  # only the last edge of the last graph carries anything
    assert float(v.penalty(raw)) == pytest.approx(0.01 * 2.4 / 24)  # the reference code would give 0
    raw = torch.full((24, 100), -0.3, dtype=torch.float64, requires_grad=True)
    v.penalty(raw).backward()
    assert torch.allclose(raw.grad, torch.full_like(raw, -0.01 / 24))  # every edge pulled towards 0


def test_kl_penalty_is_zero_at_the_prior_and_positive_elsewhere():
    v = get_variant("kl", 1.0)
    prior = torch.zeros(10, 2 * 100)  # mu = 0, log-variance = 0
    assert float(v.penalty(prior)) == 0.0
    off = prior.clone()
    off[:, 0] = 0.5
    off[:, 150] = -1.0
    expected = (0.5 * 0.25 + 0.5 * (math.exp(-1.0) + 1.0 - 1.0))  # per edge
    assert float(v.penalty(off)) == pytest.approx(expected, rel=1e-6)


def test_kl_messages_are_sampled_in_training_and_means_in_evaluation():
    m = _model("kl")
    b = _batch()
    g = torch.Generator().manual_seed(0)
    mean = m(b).messages
    assert torch.equal(mean, m.variant.split(m(b).raw)[0])
    assert not torch.allclose(m(b, sample=True, generator=g).messages, mean)


@pytest.mark.parametrize("node_model", ["additive", "mlp"])
def test_node_model_alone_reproduces_the_network(node_model):
    m = _model("l1", node_model=node_model)
    b = _batch()
    out = m(b)
    alone = m.apply_node_model(m.node_features(b), out.summed)
    assert torch.allclose(alone, m.predict(b), atol=1e-12)


@pytest.mark.parametrize("node_messages", ["over_mass", "sum", "both"])
def test_additive_node_model_is_linear_in_the_summed_messages_and_the_mlp_is_not(node_messages):
    b = _batch(2)
    g = torch.Generator().manual_seed(3)
    for node_model, linear in (("additive", True), ("mlp", False)):
        m = _model("l1", node_model=node_model, node_messages=node_messages)
        f = m.node_features(b)
        s1, s2 = (torch.randn(b.n_nodes, m.message_dim, generator=g, dtype=torch.float64) for _ in range(2))
        zero = torch.zeros_like(s1)
        f0 = m.apply_node_model(f, zero)
        residual = (m.apply_node_model(f, s1 + 2 * s2) - f0) - (m.apply_node_model(f, s1) - f0) \
            - 2 * (m.apply_node_model(f, s2) - f0)
        assert torch.allclose(residual, torch.zeros_like(residual), atol=1e-10) == linear


def test_target_scale_is_the_median_or_the_clipped_rms():
    b = _batch(50)
    b.acc = b.acc.clone()
    b.acc[0, 0] = 1e6  # one near-collision: moves neither scale much
    b.acc[1:80] = 0.0  # nodes that feel no force (the discontinuous law): left out of the median
    a = b.acc.reshape(-1).abs()
    med, rms = _model(target_scale="median"), _model(target_scale="rms")
    med.fit_scales(b)
    rms.fit_scales(b)
    assert float(med.acc_scale) == pytest.approx(float(a[a > 0].median()))
    clipped = torch.minimum(a, torch.quantile(a, 0.99))
    assert float(rms.acc_scale) == pytest.approx(float(clipped.pow(2).mean().sqrt()))


def test_unknown_names_give_one_line_errors():
    with pytest.raises(SymdistillError, match=r"Unknown model 'l2'\. Choose one of: bottleneck, hamiltonian, kl, l1, standard\. Did you mean"):
        ModelConfig(variant="l2")
    with pytest.raises(SymdistillError, match="Unknown node model 'additve'.*Did you mean 'additive'"):
        ModelConfig(node_model="additve")
    with pytest.raises(SymdistillError, match="Unknown target scale"):
        ModelConfig(target_scale="mean")
    with pytest.raises(SymdistillError, match="Unknown activation"):
        ModelConfig(activation="rleu")
    with pytest.raises(SymdistillError, match=r"`model.hidden` must be > 0 \(got 0\)"):
        ModelConfig(hidden=0)


def _record(messages, forces, variant="l1", significance=None):
    return MessageRecord(inputs={}, messages=messages, variant=variant, dim=forces.shape[1], forces=forces,
                         significance=messages.std(0) if significance is None else significance)


def test_force_r2_is_one_for_any_affine_map_of_forces_and_low_for_noise():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((500, 2))
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])
    msgs = np.column_stack([f @ rot * 3.0 + 1.5, rng.standard_normal(500), (f ** 2).sum(1)])
    r2 = force_r2(_record(msgs, f), components=[0, 1, 2, 3])
    assert r2[0] == pytest.approx(1.0) and r2[1] == pytest.approx(1.0)
    assert r2[2] < 0.05 and r2[3] < 0.5


def test_bulk_force_r2_leaves_out_the_largest_forces():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((1000, 2))
    f[:5] *= 1e4  # five near-collisions
    msgs = f.copy()
    msgs[:5] = 0.0  # a network that misses them, and is exact elsewhere
    rec = _record(msgs, f)
    assert max(force_r2(rec, [0, 1])) < 0.9
    assert force_r2(rec, [0, 1], bulk=True) == pytest.approx([1.0, 1.0])


def test_top_components_rank_by_std_kl_or_take_all_for_bottleneck():
    rng = np.random.default_rng(1)
    msgs = rng.standard_normal((100, 5)) * np.array([0.1, 5.0, 0.2, 3.0, 0.01])
    f = rng.standard_normal((100, 2))
    assert list(top_components(_record(msgs, f))) == [1, 3]
    assert list(top_components(_record(msgs, f, "kl", np.array([0.0, 0.1, 9.0, 0.2, 4.0])))) == [2, 4]
    assert sorted(top_components(_record(msgs[:, :2], f, "bottleneck"))) == [0, 1]


def test_recorded_inputs_and_forces_match_the_ground_truth_law():
    traj = simulate("r2", n_sims=2, n_steps=3, n_bodies=4, dim=3)
    b = GraphBatch.from_arrays(traj.pos[:, 0], traj.vel[:, 0], traj.mass, traj.charge, traj.acc[:, 0], dtype=torch.float64)
    m = _model("bottleneck", dim=3)
    rec = record_messages(m, b, law=traj.law)
    assert set(rec.inputs) == {"dx", "dy", "dz", "r", "m1", "m2", "q1", "q2", "dvx", "dvy", "dvz"}
    assert rec.messages.shape == (24, 3) and rec.forces.shape == (24, 3)
    # summing the recorded pair forces per receiver gives the simulator's accelerations
    net = np.zeros((8, 3))
    np.add.at(net, rec.edge_index[1], rec.forces)
    assert np.allclose(net / b.mass.numpy()[:, None], b.acc.numpy(), rtol=1e-6, atol=1e-8)
    # and the sympy ground truth agrees with the numeric pair force
    import sympy as sp
    fx = sp.lambdify([sp.Symbol(n) for n in ("dx", "dy", "dz", "r", "m1", "m2")],
                     get_law("r2").force_expr(3)[0].subs({s: sp.Symbol(s.name) for s in get_law("r2").force_expr(3)[0].free_symbols}))
    i = rec.inputs
    assert np.allclose(fx(i["dx"], i["dy"], i["dz"], i["r"], i["m1"], i["m2"]), rec.forces[:, 0], rtol=1e-6)
    assert np.allclose(pair_forces(traj.law, b), rec.forces)


def test_fully_connected_batch_edges_match_the_pattern():
    b = _batch(2, n=3)
    assert torch.equal(b.edge_index[:, :6], fully_connected(3))


def test_recorded_node_data_reproduces_the_node_model():
    from symdistill.train.metrics import record_nodes
    m = _model("l1")
    b = _batch(5)
    rec = record_nodes(m, b)
    feats = torch.as_tensor(np.column_stack([rec[n] for n in m.node_input_names]))
    again = m.apply_node_model(feats, torch.as_tensor(rec["summed"]))
    assert np.allclose(again.detach().numpy(), rec["pred"]) and np.allclose(rec["pred"], m.predict(b).numpy())
    assert rec["summed"].shape == (20, 100) and rec["acc"].shape == (20, 2)
