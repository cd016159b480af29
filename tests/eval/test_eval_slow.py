"""Real processes (deselected by default; ``pytest -m slow tests/eval``): ``timegrpo eval`` killed with SIGKILL
half way and rerun, and two CPU ranks under ``torchrun``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_sigkill_half_way_then_rerun_finishes_without_redoing(synth_dir, tmp_path, synth_args, run_cli,
                                                              count_generate):
    out = tmp_path / "out"
    argv = synth_args(synth_dir / "test.jsonl", out, "--batch-size", "1")
    proc = subprocess.Popen([sys.executable, "-m", "timegrpo.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    preds = out / "predictions.jsonl"
    deadline = time.monotonic() + 240
    while not (preds.is_file() and preds.read_bytes().count(b"\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "no predictions before the deadline"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = preds.read_bytes()
    n_done = before.count(b"\n")
    assert 3 <= n_done < 10
    gen = count_generate()
    rc, _, err = run_cli(argv)
    assert rc == 0 and f"{n_done} already predicted, {10 - n_done} to do" in err
    assert sum(gen.prompts) == 10 - n_done  # nothing predicted twice
    assert preds.read_bytes().startswith(before[: before.rfind(b"\n") + 1])
    assert [p["qid"] for p in lines(preds)] == [f"synth_{i:05d}" for i in range(10)]


def test_torchrun_two_cpu_ranks(synth_dir, tmp_path, synth_args):
    out = tmp_path / "out"
    argv = synth_args(synth_dir / "test.jsonl", out)
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "timegrpo.cli", *argv],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "10 to do over 2 ranks" in res.stderr
    assert [p["qid"] for p in lines(out / "predictions.jsonl")] == [f"synth_{i:05d}" for i in range(10)]
    assert not (out / "parts").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 10 and metrics["run"]["world_size"] == 2
