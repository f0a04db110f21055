"""The command line: round trip, one-line errors, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from symdistill.cli import main
from symdistill.simulate import open_dataset, simulate


def test_simulate_then_info_round_trip(tmp_path, capsys):
    out = tmp_path / "spring.h5"
    rc = main(["simulate", "--system", "spring", "--dim", "2", "--n-bodies", "4", "--n-sims", "6",
               "--steps", "25", "--seed", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    mem = simulate("spring", n_sims=6, n_bodies=4, dim=2, n_steps=25, seed=3)
    with open_dataset(out) as ds:
        np.testing.assert_array_equal(ds.read()["pos"], mem.pos)
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["system"] == "spring" and info["n_sims"] == 6 and info["seed"] == 3
    assert main(["info", str(out)]) == 0
    assert "6 simulations x 25 steps" in capsys.readouterr().out


def test_potential_option(tmp_path):
    out = tmp_path / "custom.h5"
    assert main(["simulate", "--potential", "(r-1)**2 + 0.1*m1*m2/r", "--n-sims", "2", "--steps", "5",
                 "--out", str(out), "--quiet"]) == 0
    with open_dataset(out) as ds:
        assert ds.system == "(r-1)**2 + 0.1*m1*m2/r"


@pytest.mark.parametrize("args,match", [
    (["simulate", "--system", "sprng", "--out", "x.h5"], "Did you mean 'spring'?"),
    (["simulate", "--potential", "(x-1)**2", "--out", "x.h5"], "Unknown name 'x'"),
    (["simulate", "--n-bodies", "1", "--out", "x.h5"], "n_bodies"),
    (["info", "missing.h5"], "File not found"),
    (["run", "--dim", "4", "--out", "x.h5"], "`dim` must be 2 or 3"),
])
def test_user_errors_print_one_line_and_exit_2(tmp_path, args, match):
    proc = subprocess.run([sys.executable, "-m", "symdistill.cli", *args], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.h5").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "symdistill.cli", "--debug", "info", "missing.h5"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_the_cli_parser_loads_none_of_the_heavy_optional_stacks():
    # every command pays the start-up: building the parser must not import what only the searches
    # (scikit-learn, pandas), the edge builders (scipy.spatial) or the PyG interop need
    import subprocess
    import sys
    code = ("import sys; from symdistill import cli; cli.build_parser(); "
            "print(sorted(m for m in ('sklearn', 'pandas', 'scipy.spatial', 'torch_geometric') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
