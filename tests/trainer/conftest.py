from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from timegrpo.data.synthetic import SynthConfig, generate

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Eight synthetic training videos (56x56, 2 fps), written once per session."""
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=8, seed=0, val_size=0, test_size=0, min_duration=6, max_duration=10), out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """``free_port()``: a TCP port nothing listens on now (the OS picks it), for one launch."""
    return _free_port


def _run(cmd, env):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture
def two_layouts(synth_dir, tmp_path):
    """``run(kind, *overrides, port=None)``: ``dist_run.py`` as 1 process x accumulation 2 and as torchrun
    --nproc_per_node 2 (Accelerate forms a real 2-rank gloo group on CPU) x accumulation 1. Checks that the
    ranks agree and that both layouts reach the same parameters; returns the results ``(one, rank0)``."""

    def run(kind, *common, port=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        script = str(HERE / "dist_run.py")
        _run([sys.executable, script, kind, str(synth_dir), str(tmp_path / "one"), "2", *common], env)
        _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port or _free_port()),
              script, kind, str(synth_dir), str(tmp_path / "two"), "1", *common], env)
        one = torch.load(tmp_path / "one" / "rank0.pt")
        r0, r1 = (torch.load(tmp_path / "two" / f"rank{r}.pt") for r in (0, 1))
        assert one["world"] == 1 and r0["world"] == r1["world"] == 2
        for name, value in r0["params"].items():
            assert torch.equal(value, r1["params"][name]), f"ranks disagree on {name}"
            torch.testing.assert_close(value, one["params"][name], rtol=1e-5, atol=1e-6, msg=name)
        return one, r0

    return run
