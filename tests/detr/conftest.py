"""Fixtures for the GIRL-DETR tests: a small synthetic feature benchmark and a tiny config over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from timegrpo.config import core
from timegrpo.detr.config import DetrConfig, FeatureSynthConfig
from timegrpo.detr.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
SYNTH_RECIPE = REPO / "recipes" / "detr" / "synthetic.yaml"


def tiny_config(root: Path, **sections: dict) -> DetrConfig:
    """A fast config over a synthetic benchmark written at ``root``."""
    d = {
        "seed": 0, "threads": 1, "device": "cpu", "out_dir": "run",
        "data": {"root": str(root), "train": "annotations/train.jsonl", "val": "annotations/val.jsonl",
                 "test": "annotations/test.jsonl", "video_feat_dirs": ["features/f0", "features/f1"],
                 "text_feat_dir": "features/text", "clip_len": 2.0},
        "model": {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2},
        "loss": {"saliency_coef": 1.0},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "ema_decay": 0.9, "eval_every": 1},
        "rl": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "p1": 0, "p2": 1, "rho": 0.05, "reinforce_ramp": 1,
               "on_unconverged": "warn"},  # a 1-3 epoch supervised run is still improving by construction
    }
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return core.from_dict(DetrConfig, d)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 synthetic videos (about 75 queries), written once per session."""
    root = tmp_path_factory.mktemp("girl_synth")
    synthesize(root, FeatureSynthConfig(n_videos=30, seed=3))
    return root


@pytest.fixture
def make_config():
    """``make_config(root, **sections)`` -> a fast :class:`DetrConfig` (see :func:`tiny_config`)."""
    return tiny_config
