"""Fixtures of the evaluation tests: one tiny model and one small synthetic split per session, helpers to run
``timegrpo eval`` in-process, to count the real ``generate`` calls, and to replace the model's answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from timegrpo.cli import main
from timegrpo.evaluate import engine


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic test videos (8-20 s, 56x56, 2 fps) and their test.jsonl."""
    from timegrpo.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=10, val_size=0, test_size=10, seed=3), out)
    return out


@pytest.fixture(scope="session")
def frame_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frames")


@pytest.fixture
def synth_args(tiny_model: Path, frame_cache: Path) -> Callable[..., list[str]]:
    """``timegrpo eval`` arguments for synthetic videos fed unresized (56x56, 2 fps), 4 new tokens."""
    def make(annotations: Path, out: Path, *extra: str) -> list[str]:
        return ["eval", "--model", str(tiny_model), "--annotations", str(annotations), "--out", str(out),
                "--template", "no_think", "--batch-size", "3", "--max-new-tokens", "3", "--fps", "2",
                "--min-pixels", "3136", "--max-pixels", "3136", "--frame-cache", str(frame_cache), *extra]

    return make


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run ``timegrpo`` in-process: ``(exit code, stdout, stderr)``."""
    def run(argv: list[str]) -> tuple[int, str, str]:
        rc = main(argv)
        cap = capsys.readouterr()
        return rc, cap.out, cap.err

    return run


class CountingGenerate:
    """Wraps the real :func:`timegrpo.rollout.generate`: records the prompts of each call; raises on call
    ``fail_on`` (1-based) to simulate a crash half way."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.real = engine.generate
        self.prompts: list[int] = []
        self.fail_on = fail_on

    def __call__(self, model, processor, inputs, params, features=None):
        if self.fail_on is not None and len(self.prompts) + 1 == self.fail_on:
            raise RuntimeError("simulated crash")
        self.prompts.append(int(inputs["input_ids"].shape[0]))
        return self.real(model, processor, inputs, params, features)


@pytest.fixture
def count_generate(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CountingGenerate]:
    def install(fail_on: int | None = None) -> CountingGenerate:
        counter = CountingGenerate(fail_on)
        monkeypatch.setattr(engine, "generate", counter)
        return counter

    return install


@pytest.fixture
def fake_answers(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], str]], list[str]]:
    """Replace the model's completions by ``answer(qid)`` (the prompts and videos are still built for real);
    returns the list of qids asked, in order. A completion starting with ``TRUNC`` is reported truncated."""
    def install(answer: Callable[[str], str]) -> list[str]:
        asked: list[str] = []

        def completer(model, processor, template, sampling):
            def complete(samples, videos):
                for s in samples:
                    frames, meta = videos(s)
                    assert frames.ndim == 4 and len(meta.frames_indices) == frames.shape[0]
                asked.extend(s.qid for s in samples)
                texts = [answer(s.qid) for s in samples]
                return texts, [t.startswith("TRUNC") for t in texts]
            return complete

        monkeypatch.setattr(engine, "hf_completer", completer)
        return asked

    return install
