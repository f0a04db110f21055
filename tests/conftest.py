"""Suite-wide hooks: the ``fuzz`` marker, and the fuzz case counts in the terminal summary."""

import sys

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz: generated CLI cases checking the contract (tests/test_fuzz.py)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    fz = sys.modules.get("fuzz_support")
    if fz is None or not fz.CASES:
        return
    tr = terminalreporter
    tr.section("fuzz cases")
    for name, n in sorted(fz.CASES.items()):
        tr.write_line(f"{n:6d}  {name}   ({fz.SECONDS[name]:.1f} s in the cases)")
    tr.write_line(f"{sum(fz.CASES.values()):6d}  total")
    if fz.SURVEY:
        tr.section("fuzz: how the cases ended")
        for (gen, command, ending), n in sorted(fz.ENDINGS.items()):
            tr.write_line(f"{n:6d}  {gen:32s} {command:36s} {ending}")
    if fz.SEEN:
        tr.section(f"fuzz: {len(fz.SEEN)} distinct contract violations seen")
        for signature, (count, report) in sorted(fz.SEEN.items()):
            tr.write_line(f"[{count}x] {signature}")
            for line in report.splitlines()[:12]:
                tr.write_line(f"    {line[:400]}")


@pytest.fixture
def one_torch_thread():
    """Small tensors: one torch thread is much faster than several on a loaded 2-core machine (no assert on it)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
