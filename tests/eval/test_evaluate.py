"""The evaluation library: predictions files (torn lines, merge), shards, explicit generation settings,
metrics assembled from records, and the numbers behind the plots."""

from __future__ import annotations

import json

import pytest
import torch
from transformers.video_utils import VideoMetadata

from timegrpo.data.schema import Sample
from timegrpo.evaluate import predictions as pr
from timegrpo.evaluate.config import SamplingOptions
from timegrpo.evaluate.engine import explicit_generation_config, greedy, prediction_record
from timegrpo.evaluate.plots import length_edges, plot_rows, recall_by_length, write_plots
from timegrpo.evaluate.score import eval_metrics


def sample(qid: str, windows, duration: float = 30.0) -> Sample:
    return Sample(qid, "v", None, duration, "q", windows)


def test_read_predictions_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    good = b'{"qid": "a", "completion": "x"}\n{"qid": "b", "completion": "y"}\n'
    path.write_bytes(good + b'{"qid": "c", "compl')
    recs, torn = pr.read_predictions(path)
    assert [r["qid"] for r in recs] == ["a", "b"] and torn == 1 and path.read_bytes().endswith(b"compl")
    recs, torn = pr.read_predictions(path, repair=True)
    assert torn == 1 and path.read_bytes() == good
    assert pr.read_predictions(path, repair=True) == (recs, 0)
    path.write_bytes(b'{"qid": "a"}\nnot json\n{"qid": "b"}\n')
    with pytest.raises(ValueError, match="line 2: not valid json"):
        pr.read_predictions(path)
    assert pr.read_predictions(tmp_path / "absent.jsonl") == ([], 0)


def test_writer_appends_whole_lines_and_merge_orders_and_dedupes(tmp_path):
    target, part1, part2 = tmp_path / "predictions.jsonl", tmp_path / "r1.jsonl", tmp_path / "r2.jsonl"
    with pr.PredictionWriter(target) as w:
        w.write([{"qid": "q2", "k": 0}])
    with pr.PredictionWriter(target) as w:  # appends
        w.write([{"qid": "q0", "k": 0}])
        assert w.written == 1
    part1.write_text('{"qid": "q1", "k": 1}\n{"qid": "q0", "k": 1}\n')
    part2.write_text('{"qid": "extra", "k": 2}\n{"qid": "q3", "k": 2}\n')
    merged = pr.merge_predictions(target, [part1, part2], ["q0", "q1", "q2", "q3"])
    assert [(r["qid"], r["k"]) for r in merged] == [("q0", 0), ("q1", 1), ("q2", 0), ("q3", 2), ("extra", 2)]
    assert [json.loads(x)["qid"] for x in target.read_text().splitlines()] == ["q0", "q1", "q2", "q3", "extra"]
    assert not part1.exists() and not part2.exists()


def test_shard_partitions_every_item_once():
    items = list(range(11))
    shards = [pr.shard(items, r, 4) for r in range(4)]
    assert sorted(x for s in shards for x in s) == items and [len(s) for s in shards] == [3, 3, 3, 2]
    with pytest.raises(ValueError, match="rank 4 of 4"):
        pr.shard(items, 4, 4)


def test_sampling_options_validate():
    with pytest.raises(ValueError, match="temperature > 0"):
        SamplingOptions(8, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens: must be >= 1, got 0"):
        SamplingOptions(0)
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        SamplingOptions(8, top_p=0.0)
    p = SamplingOptions(8, do_sample=True, temperature=0.5, top_k=4).params()
    assert (p.num_generations, p.max_completion_length, p.temperature, p.top_k, p.do_sample) == (1, 8, 0.5, 4, True)


def _prompts(processor):
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (4, 3, 56, 56), dtype=torch.uint8, generator=g) for _ in range(2)]
    meta = [VideoMetadata(total_num_frames=4, fps=2.0, frames_indices=[0, 1, 2, 3], duration=2.0)] * 2
    msgs = [[{"role": "user", "content": [{"type": "video", "video": "v"}, {"type": "text", "text": t}]}]
            for t in ("when", "where is it")]
    from timegrpo.prompts import prepare_prompts

    return prepare_prompts(processor, msgs, frames, meta)


def test_checkpoint_generation_defaults_never_apply():
    """A checkpoint whose generation_config asks for no repeated tokens and a strong repetition penalty gives
    the same greedy completions as a clean one inside explicit_generation_config, and different ones outside."""
    from timegrpo.models.tiny import build_tiny_vlm
    from timegrpo.rollout import generate

    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs, params = _prompts(processor), greedy(6)
    clean = generate(model, processor, inputs, params).completion_ids
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.repetition_penalty = 5.0
    polluted = generate(model, processor, inputs, params).completion_ids
    assert not torch.equal(polluted, clean)  # the untreated path does pick the checkpoint's defaults up
    with explicit_generation_config(model, params) as cfg:
        assert (cfg.no_repeat_ngram_size, cfg.repetition_penalty, cfg.num_beams, cfg.do_sample) == (None, 1.0, 1,
                                                                                                   False)
        assert cfg.eos_token_id == model.generation_config.eos_token_id
        assert torch.equal(generate(model, processor, inputs, params).completion_ids, clean)
    assert model.generation_config.no_repeat_ngram_size == 1  # restored


def test_eval_metrics_by_hand():
    samples = [sample("a", [(10.0, 20.0)]), sample("b", [(0.0, 4.0), (20.0, 30.0)]), sample("c", [(5.0, 9.0)]),
               sample("d", []), sample("e", [(1.0, 2.0)])]
    texts = {"a": "<answer>12 to 20</answer>",  # 0.8
             "b": "<answer>22 to 30</answer>",  # 0.8 against the second window
             "c": "<answer>nothing</answer>",  # unparsed: 0
             "d": "<answer>1 to 2</answer>"}  # no ground truth: not scored; "e" has no prediction (skipped)
    records = [prediction_record(s, texts[s.qid], truncated=s.qid == "c") for s in samples if s.qid in texts]
    m, result = eval_metrics(samples, records, think=False, skipped={"unreadable_video": 1})
    assert (m["R1@0.3"], m["R1@0.7"], m["mIoU"]) == pytest.approx((200 / 3, 200 / 3, 160 / 3))
    assert m["format_rate"] == 100.0 and (m["n"], m["unparsed"], m["n_truncated"]) == (3, 1, 1)
    assert m["skipped"] == {"unreadable_video": 1} and m["n_skipped"] == 1 and m["n_no_gt_windows"] == 1
    assert result.counts["n_skipped_unreadable_video"] == 1 and "skipped" not in result.counts


def test_plot_numbers_and_files(tmp_path):
    samples = [sample(str(i), [(0.0, float(n))], 40.0) for i, n in enumerate([2, 3, 8, 9])]
    preds = [[[0.0, 1.8, 1.0]], [[0.0, 30.0, 1.0]], [[0.0, 4.8, 1.0]], []]
    rows = plot_rows([{"pred_relevant_windows": p} for p in preds], samples)
    assert [round(r.iou, 3) for r in rows] == [0.9, 0.1, 0.6, 0.0] and rows[3].pred is None
    edges = length_edges([2, 3, 8, 9], n_bins=2)
    assert edges == [2.0, 5.5, 9.0]
    bins = recall_by_length([2, 3, 8, 9], [r.iou for r in rows], edges)
    assert [(b["n"], b["R1@0.3"], b["R1@0.7"]) for b in bins] == [(2, 50.0, 50.0), (2, 50.0, 0.0)]
    paths = write_plots([{"pred_relevant_windows": p} for p in preds], samples, tmp_path)
    assert [p.name for p in paths] == ["iou_hist.png", "r1_by_length.png", "centres.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000 for p in paths)
    assert write_plots([{"pred_relevant_windows": []}], [sample("x", [])], tmp_path / "none") == []


def test_video_options_are_the_recipe_data_fields():
    """The eval ``video`` section declares DataConfig's video fields: same types, defaults, help and checks."""
    import dataclasses
    import typing

    from timegrpo.config import ConfigError, DataConfig
    from timegrpo.evaluate.config import VIDEO_FIELDS, VideoOptions

    ours, theirs = typing.get_type_hints(VideoOptions), typing.get_type_hints(DataConfig)
    data_fields = {f.name: f for f in dataclasses.fields(DataConfig)}
    assert [f.name for f in dataclasses.fields(VideoOptions)] == list(VIDEO_FIELDS)
    for f in dataclasses.fields(VideoOptions):
        assert (ours[f.name], f.default, f.metadata["help"]) == (theirs[f.name], data_fields[f.name].default,
                                                                 data_fields[f.name].metadata["help"])
    assert set(VIDEO_FIELDS) == set(DataConfig().video_sampling_kwargs())  # every field that sets sampling
    with pytest.raises(ConfigError, match=r"^video\.nframes: must be >= 2"):
        VideoOptions(nframes=1)


def test_eval_config_checks_and_registries():
    from timegrpo.config import ConfigError
    from timegrpo.evaluate.backends import BACKENDS
    from timegrpo.evaluate.config import EvalConfig, ScoreConfig, require

    base = {"model": "m", "annotations": "a.json", "out": "o"}
    assert BACKENDS.names() == ["hf", "vllm"] and EvalConfig(**base).video.fps == 2.0
    with pytest.raises(ConfigError, match="backend: 'tgi' is not one of hf, vllm"):
        EvalConfig(**base, backend="tgi")
    require(EvalConfig(**base), "model", "annotations", "out")
    with pytest.raises(ConfigError, match=r"missing: --model --out \(give them as a flag or in --config\)"):
        require(EvalConfig(annotations="a.json"), "model", "annotations", "out")
    with pytest.raises(ConfigError, match="batch_size: must be >= 1, got 0"):
        EvalConfig(**base, batch_size=0)
    with pytest.raises(ConfigError, match="benchmark: 'mr' is not one of auto, grounding, nextgqa, qvhighlights"):
        ScoreConfig(predictions="p", annotations="a", benchmark="mr")


def test_benchmarks_registry_detects_and_reads():
    from timegrpo.evaluate.benchmarks import (
        BENCHMARKS,
        detect_benchmark,
        read_windows,
        read_windows_and_answer,
    )

    qvh = Sample("q", "v", None, 150.0, "q", [(0.0, 4.0)], meta={"saliency_scores": [], "relevant_clip_ids": []})
    assert [detect_benchmark([qvh], f) for f in ("moment_detr", "nextgqa", "rextime", "activitynet")] == [
        "qvhighlights", "nextgqa", "rextime", "grounding"]
    assert detect_benchmark([sample("x", [(0.0, 1.0)])], "moment_detr") == "grounding"  # no saliency labels
    assert BENCHMARKS.names() == ["grounding", "nextgqa", "qvhighlights", "rextime"]
    assert BENCHMARKS.get("rextime").read is read_windows_and_answer and BENCHMARKS.get("grounding").read is read_windows
    s = Sample("g", "v", None, 30.0, "q", [(2.0, 8.0)], meta={"options": ["a cat", "a dog"], "answer": 1})
    pred = read_windows_and_answer({"completion": "<answer>(B)</answer><glue>[(2, 8), (9, 12)]</glue>"}, s)
    assert (pred.top1, pred.answer) == ((2.0, 8.0), "B")  # no span in the answer: the first glue span
    assert read_windows_and_answer({"completion": "x", "pred_answer": "a cat"}, s).answer == "A"
    assert read_windows_and_answer({"completion": "x", "pred_answer": "a cow"}, s).answer is None
    with pytest.raises(KeyError, match="unknown benchmark 'mr'; known: grounding, nextgqa, qvhighlights, rextime"):
        BENCHMARKS.get("mr")
