"""A checkpoint appears only when complete; resume refuses an interrupted one; the counters are JSON, not pickle."""

from __future__ import annotations

import json
import shutil

import pytest

from timegrpo.config.core import ConfigError
from timegrpo.trainer.loop import STATE_FILE, read_checkpoint_state

from .test_sft import make_sft


def test_checkpoint_is_renamed_into_place_with_json_counters(synth_dir, tmp_path, monkeypatch):
    trainer = make_sft(synth_dir, tmp_path / "run", "--sft.max_steps", "2")
    trainer.train_step()
    path = trainer.save_checkpoint()
    assert path.name == "checkpoint-1" and not list((tmp_path / "run").glob(".*.tmp"))
    assert json.loads((path / "state" / STATE_FILE).read_text()) == {"format": 1, "step": 1}
    assert not list(path.rglob("custom_checkpoint_*"))  # the trainer's own state is never pickled

    # a kill in the middle of the next save: save_state raises after writing part of the folder
    real = trainer.accelerator.save_state

    def killed(folder):
        real(folder)
        raise KeyboardInterrupt

    trainer.train_step()
    monkeypatch.setattr(trainer.accelerator, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    assert not (tmp_path / "run" / "checkpoint-2").exists() and (tmp_path / "run" / ".checkpoint-2.tmp").is_dir()
    monkeypatch.setattr(trainer.accelerator, "save_state", real)
    assert trainer.save_checkpoint().name == "checkpoint-2"  # the next save replaces the leftover
    assert not (tmp_path / "run" / ".checkpoint-2.tmp").exists()

    resumed = make_sft(synth_dir, tmp_path / "run2", "--sft.max_steps", "2")
    resumed.load_checkpoint(tmp_path / "run" / "checkpoint-2")
    assert resumed.state["step"] == 2


def test_resume_refuses_an_incomplete_checkpoint(tmp_path):
    (tmp_path / "checkpoint-3" / "state").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"checkpoint-3 is incomplete \(no state/timegrpo_state.json\)"):
        read_checkpoint_state(tmp_path / "checkpoint-3")
    with pytest.raises(ConfigError, match="is not a timegrpo checkpoint"):
        read_checkpoint_state(tmp_path)
    (tmp_path / "checkpoint-3" / "state" / STATE_FILE).write_text("{oops")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        read_checkpoint_state(tmp_path / "checkpoint-3")
    shutil.rmtree(tmp_path / "checkpoint-3")
