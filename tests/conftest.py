"""Shared fixtures. Real annotation files and videos are read from ../shared/data, never copied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public annotation files (see ../shared/data/README.md); tests skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (real annotation files live beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2.5-VL folder, built offline once per session (eval and curriculum tests)."""
    from timegrpo.models.tiny import save_tiny_vlm

    return save_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


def write_broken_videos(good: Path, out: Path) -> dict[str, Path]:
    """Broken copies of the mp4 ``good`` in ``out``: ``zero`` (0 bytes), ``truncated`` (its first half: no index),
    ``random`` (20 kB of random bytes) and ``corrupt`` (index intact, the frame data overwritten with random
    bytes after the first 200 bytes of ``mdat``: the decoder fails on the frames, not on opening)."""
    import random

    data = good.read_bytes()
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    assert 0 < mdat < moov, "expected an mp4 with its index (moov) after the frame data (mdat)"
    rng = random.Random(0)
    corrupt = bytearray(data)
    for i in range(mdat + 208, moov - 8):
        corrupt[i] = rng.randrange(256)
    out.mkdir(parents=True, exist_ok=True)
    files = {"zero": b"", "truncated": data[: len(data) // 2], "random": rng.randbytes(20000), "corrupt": bytes(corrupt)}
    paths = {}
    for name, blob in files.items():
        paths[name] = out / f"{name}.mp4"
        paths[name].write_bytes(blob)
    return paths


@pytest.fixture
def broken_videos() -> Callable[[Path, Path], dict[str, Path]]:
    """:func:`write_broken_videos`, for tests that need unreadable videos of every kind."""
    return write_broken_videos
