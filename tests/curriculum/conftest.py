"""Fixtures of the curriculum tests: one tiny Qwen2.5-VL and four short synthetic videos per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic training videos (6-8 s, 56x56, 2 fps) and their train.jsonl."""
    from timegrpo.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=4, val_size=0, test_size=0, seed=1, min_duration=6, max_duration=8), out)
    return out
