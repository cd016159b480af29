"""`timegrpo report` over real `timegrpo eval` folders (tiny model, synthetic videos, answers set by the test) and a
training run's metrics.jsonl: the page's sections, the cross-benchmark table's rows and numbers, embedded PNGs."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from timegrpo.cli import main
from timegrpo.evaluate import engine


class Page(HTMLParser):
    """The parts of the page the tests look at: section ids, table rows (cell texts), image sources."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None


@pytest.fixture
def answers(monkeypatch):
    """``answers(fn)``: the eval's completions become ``fn(sample)`` (videos and prompts still built for real)."""
    def install(fn):
        def completer(model, processor, template, sampling):
            def complete(samples, videos):
                return [fn(s) for s in samples], [False] * len(samples)
            return complete
        monkeypatch.setattr(engine, "hf_completer", completer)
    return install


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from timegrpo.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=8, val_size=0, test_size=6, seed=5, min_duration=8, max_duration=12), out)
    return out


def evaluate(model: Path, ann: Path, out: Path, synth: Path) -> dict:
    assert main(["eval", "--model", str(model), "--annotations", str(ann), "--videos", str(synth), "--out", str(out),
                 "--template", "no_think", "--batch-size", "3", "--max-new-tokens", "3", "--fps", "2",
                 "--min-pixels", "3136", "--max-pixels", "3136"]) == 0
    return json.loads((out / "metrics.json").read_text())


def shifted(shift: float):
    """Answers: the true window moved by ``shift`` seconds (the first sample's answer unparsable)."""
    def fn(s):
        if s.qid.endswith("0"):
            return "no idea"
        (a, b), = s.windows[:1]
        return f"<answer>{a + shift:.2f} to {b + shift:.2f}</answer>"
    return fn


def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "grpo"
    run.mkdir(parents=True)
    logs = [{"step": s, "reward": 0.2 * s, "iou": 0.1 * s, "kl": 0.01 * s, "frac_reward_zero_std": 0.5 / s,
             "loss": 0.3} for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in logs) + '{"step": 4, "rew')
    shutil.copy(Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml", run / "config.yaml")
    return run


def test_report_page_structure(tmp_path, tiny_model, synth, answers, capsys):
    ckpt_a, ckpt_b = tmp_path / "ckpt" / "checkpoint-1", tmp_path / "ckpt" / "checkpoint-2"
    shutil.copytree(tiny_model, ckpt_a)
    shutil.copytree(tiny_model, ckpt_b)
    train = tmp_path / "bench2" / "train.jsonl"
    train.parent.mkdir()
    train.write_text("".join((synth / "train.jsonl").read_text().splitlines(keepends=True)[:2]))
    answers(shifted(1.0))
    m_a = evaluate(ckpt_a, synth / "test.jsonl", tmp_path / "evals" / "a_test", synth)
    evaluate(ckpt_a, train, tmp_path / "evals" / "a_train", synth)
    answers(shifted(3.0))
    m_b = evaluate(ckpt_b, synth / "test.jsonl", tmp_path / "evals" / "b_test", synth)
    capsys.readouterr()
    run = run_dir(tmp_path)
    out = tmp_path / "site" / "report.html"
    assert main(["report", "--out", str(out), str(tmp_path / "evals"), str(run), "--examples", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["evaluations"], summary["runs"], summary["checkpoints"], summary["benchmarks"]) == (3, 1, 2, 2)
    page = Page(out.read_text())
    assert page.sections == ["table", "benchmarks", "training"]
    header, metrics_row, *rows = page.tables[0]
    assert header == ["checkpoint", "test.jsonl", "train.jsonl"]
    assert metrics_row == ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU"] * 2
    assert [r[0] for r in rows] == ["ckpt/checkpoint-1", "ckpt/checkpoint-2"]
    assert rows[0][1:5] == [f"{m_a[k]:.2f}" for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")]
    assert rows[1][1:5] == [f"{m_b[k]:.2f}" for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")]
    assert rows[1][5:] == ["-"] * 4  # checkpoint-2 was not evaluated on train.jsonl
    assert m_a["mIoU"] > m_b["mIoU"] > 0 and f"<b>{m_a['mIoU']:.2f}</b>" in out.read_text()
    # 3 evaluation plots + 1 timeline per evaluation, 1 figure of training curves; all PNG, also on disk
    assert len(page.images) == 3 * 4 + 1 == summary["images"]
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "site" / "report_files").rglob("*.png"))) == 13
    assert "3 logged steps; last (step 3)" in out.read_text()  # the partial last line is left out
    recipe = dict(row for row in page.tables[-1] if len(row) == 2)
    assert (recipe["stage"], recipe["G"], recipe["rewards"]) == ("grpo", "8", "tiou, format")


def test_missing_annotations_fall_back_to_the_eval_plots(tmp_path, tiny_model, synth, answers, capsys):
    ann = tmp_path / "moved" / "test.jsonl"
    ann.parent.mkdir()
    shutil.copy(synth / "test.jsonl", ann)
    answers(shifted(0.5))
    evaluate(tiny_model, ann, tmp_path / "ev", synth)
    ann.unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "ev"), "--out", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    page = Page(text)
    assert "not found: no ground truth to draw" in text and "No training run given." in text
    assert len(page.images) == 3  # the eval's own plots/*.png


def test_bad_inputs_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("timegrpo report: error:") and "metrics.json" in err and len(err.splitlines()) == 1
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.txt")]) == 2
    assert "must end in .html" in capsys.readouterr().err
