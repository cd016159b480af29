from __future__ import annotations

import pytest

from timegrpo.data.synthetic import SynthConfig, generate


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Eight synthetic training videos (56x56, 2 fps), written once per session."""
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=8, seed=0, val_size=0, test_size=0, min_duration=6, max_duration=10), out)
    return out
