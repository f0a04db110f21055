"""The graph container: graphs of different sizes in one batch, per-node and per-graph targets, the
network on it (sum and mean aggregation, per-graph readout), and conversion to and from PyG."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from symdistill.errors import SymdistillError
from symdistill.graphs import GraphBatch, fully_connected
from symdistill.models import GraphNetwork, ModelConfig
from symdistill.problems import NBodyForces, Problem, Target

pyg = pytest.importorskip("torch_geometric", reason="PyG interop needs the [pyg] extra (installed by make test)")
from symdistill.graphs.pyg import from_pyg, to_pyg  # noqa: E402


def _system(n, dim=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pos, vel, acc = (torch.randn(1, n, dim, generator=g, dtype=dtype) for _ in range(3))
    mass = torch.exp(torch.randn(1, n, generator=g, dtype=dtype))
    charge = torch.randn(1, n, generator=g, dtype=dtype)
    return GraphBatch.from_arrays(pos, vel, mass, charge, acc, dtype=dtype)


def _model(dim=2, **kw):
    torch.manual_seed(0)
    m = GraphNetwork(ModelConfig(hidden=16, layers=2, **kw), dim).double()
    m.fit_scales(GraphBatch.collate([_system(4, dim, seed=s) for s in range(8)]))
    return m.eval()


def test_graphs_of_different_sizes_batch_and_predict_as_alone():
    graphs = [_system(n, seed=n) for n in (3, 5, 2)]
    b = GraphBatch.collate(graphs)
    assert (b.n_graphs, b.n_nodes, b.n_edges, b.in_degree) == (3, 10, 6 + 20 + 2, None)
    assert torch.equal(b.ptr, torch.tensor([0, 3, 8, 10]))
    assert torch.equal(b.graph, torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2, 2]))
    assert torch.equal(b.graph[b.edge_index[0]], b.graph[b.edge_index[1]])  # no edge joins two graphs
    m = _model()
    whole = m.predict(b)
    for k, g in enumerate(graphs):
        assert torch.allclose(whole[b.ptr[k]:b.ptr[k + 1]], m.predict(g), atol=1e-12)
        sub = b.select_graphs([k])
        assert torch.equal(sub.pos, g.pos) and torch.equal(sub.edge_index, g.edge_index)
    swapped = b.select_graphs([2, 0])
    assert torch.equal(swapped.ptr, torch.tensor([0, 2, 5])) and torch.allclose(swapped.pos[2:], graphs[0].pos)


def test_uniform_batches_keep_the_reshape_sum():
    b = GraphBatch.collate([_system(4, seed=s) for s in range(3)])
    assert b.in_degree == 3 and b.batch is None
    m = _model()
    scatter = replace(b, in_degree=None)
    assert torch.allclose(m(b).pred, m(scatter).pred, atol=1e-12)


def test_mean_aggregation_divides_by_the_in_degree():
    m = _model(aggregation="mean")
    b = _system(5)
    out = m(b)
    assert torch.allclose(out.summed, out.messages.view(5, 4, -1).mean(1), atol=1e-12)
    assert torch.allclose(m(replace(b, in_degree=None)).summed, out.summed, atol=1e-12)


class _GraphEnergy(Problem):
    """A toy problem: one scalar per graph (the sum of a per-node quantity) from masses only."""

    name = "toy-graph-scalar"

    def __init__(self):
        self.target = Target("energy", "graph", 1)
        self.edge_names, self.node_names, self.record_names = ["m1", "m2"], ["m"], ["m1", "m2"]

    def edge_features(self, batch):
        m = batch["mass"]
        return torch.stack([m[batch.edge_index[1]], m[batch.edge_index[0]]], 1)

    def node_features(self, batch):
        return batch["mass"][:, None]

    record_features = edge_features


def test_per_graph_scalar_targets_train_through_the_readout():
    problem = _GraphEnergy()
    graphs = []
    for n in (2, 3, 4, 5) * 4:
        mass = torch.rand(n, dtype=torch.float64) + 0.5
        graphs.append(GraphBatch({"mass": mass}, fully_connected(n), 1,
                                 {"energy": (mass.sum() ** 2).reshape(1)}))
    b = GraphBatch.collate(graphs)
    assert b.targets["energy"].shape == (16,)
    torch.manual_seed(0)
    m = GraphNetwork(ModelConfig(variant="standard", hidden=32, layers=2, node_messages="sum", message_dim=4),
                     problem=problem).double()
    m.fit_scales(b)
    assert m(b).pred.shape == (16, 1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    target = problem.target_values(b) / m.out_scale
    with torch.no_grad():
        first = float(problem.loss(m(b).pred, target))
    for _ in range(300):
        opt.zero_grad()
        loss = problem.loss(m(b).pred, target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    assert torch.equal(b.select_graphs([3, 1]).targets["energy"], b.targets["energy"][[3, 1]])


def test_a_divisor_the_problem_lacks_is_a_one_line_error():
    with pytest.raises(SymdistillError, match="use node_messages=sum"):
        GraphNetwork(ModelConfig(node_messages="over_mass"), problem=_GraphEnergy())


# ---- PyG -------------------------------------------------------------------------------------
def test_round_trip_through_pyg_keeps_every_field_and_the_prediction():
    b = GraphBatch.collate([_system(4, seed=s) for s in range(3)])
    p = to_pyg(b)
    assert isinstance(p, pyg.data.Batch) and p.num_graphs == 3
    assert torch.equal(p.edge_index, b.edge_index) and torch.equal(p.batch, b.graph)
    back = from_pyg(p, targets=["acc"])
    for k in ("pos", "vel", "mass", "charge"):
        assert torch.equal(back[k], b[k])
    assert torch.equal(back.targets["acc"], b.targets["acc"]) and back.in_degree == 3
    m = _model()
    assert torch.equal(m.predict(back), m.predict(b))


def test_to_pyg_with_a_problem_feeds_pyg_layers():
    b = GraphBatch.collate([_system(n, seed=n) for n in (3, 5)])
    problem = NBodyForces(2)
    p = to_pyg(b, problem=problem)
    assert p.x.shape == (8, len(problem.node_names)) and p.edge_attr.shape == (26, len(problem.edge_names))
    assert torch.equal(p.y, b.targets["acc"])
    conv = pyg.nn.GraphConv(p.x.shape[1], 7).double()
    assert conv(p.x, p.edge_index).shape == (8, 7)
    assert [g.num_nodes for g in p.to_data_list()] == [3, 5]


def test_a_pyg_loader_feeds_the_network():
    graphs = [_system(n, seed=n) for n in (2, 3, 4, 5, 6)]
    data = to_pyg(GraphBatch.collate(graphs)).to_data_list()
    m = _model()
    loader = pyg.loader.DataLoader(data, batch_size=2, shuffle=False)
    preds = [m.predict(from_pyg(batch, targets=["acc"])) for batch in loader]
    assert torch.allclose(torch.cat(preds), m.predict(GraphBatch.collate(graphs)), atol=1e-12)


def test_pyg_data_with_per_graph_targets_and_bad_inputs():
    graphs = [pyg.data.Data(mass=torch.rand(n), edge_index=fully_connected(n), y=torch.tensor([float(n)]), num_nodes=n)
              for n in (2, 4)]
    b = from_pyg(graphs)
    assert b.n_graphs == 2 and torch.equal(b.targets["y"], torch.tensor([2.0, 4.0])) and "mass" in b
    with pytest.raises(SymdistillError, match="no edge_index"):
        from_pyg(pyg.data.Data(mass=torch.rand(3), num_nodes=3))
    with pytest.raises(SymdistillError, match="no attribute 'vel'"):
        from_pyg(graphs, nodes=["mass", "vel"])
    np.testing.assert_array_equal(to_pyg(b).y.numpy(), [2.0, 4.0])


def test_the_readme_example_runs(monkeypatch):
    import re
    from pathlib import Path
    root = Path(__file__).parent.parent
    text = (root / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "RadiusGraph" in b)
    monkeypatch.chdir(root)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # the project's own README, not user input
    assert scope["accelerations"].shape == (9, 2) and scope["edges"].edge_index.shape[0] == 2


def test_a_batch_built_by_a_periodic_radius_graph_carries_minimum_image_displacements():
    from symdistill.graphs import RadiusGraph
    pos = torch.tensor([[0.02, 0.5], [0.97, 0.5], [0.5, 0.5], [0.1, 0.1], [0.9, 0.9]], dtype=torch.float64)
    b = GraphBatch.build({"pos": pos, "mass": torch.ones(5, dtype=torch.float64)}, RadiusGraph(0.1, box_size=1.0),
                         batch=[0, 0, 0, 1, 1])
    pairs = {(int(j), int(i)) for j, i in b.edge_index.T}
    assert pairs == {(0, 1), (1, 0)}  # only across the boundary, and never between the two graphs
    k = [n for n, (j, i) in enumerate(b.edge_index.T.tolist()) if (j, i) == (1, 0)][0]
    assert torch.allclose(b.edges["displacement"][k], torch.tensor([0.05, 0.0], dtype=torch.float64))
    assert b.n_graphs == 2 and b.in_degree is None
    assert torch.equal(b.select_graphs([1]).edge_index, torch.zeros(2, 0, dtype=torch.long))


def test_a_per_node_scalar_target_is_one_column():
    class NodeScalar(_GraphEnergy):
        name = "toy-node-scalar"

        def __init__(self):
            super().__init__()
            self.target = Target("delta", "node", 1)

    problem = NodeScalar()
    mass = torch.rand(6, dtype=torch.float64) + 0.5
    b = GraphBatch({"mass": mass}, fully_connected(6), 1, {"delta": mass * 2})
    assert problem.target_values(b).shape == (6, 1)
    m = GraphNetwork(ModelConfig(hidden=8, layers=1, node_messages="sum"), problem=problem).double()
    m.fit_scales(b)
    assert m.predict(b).shape == (6, 1) and m(b).summed.shape[0] == 6
