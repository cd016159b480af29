"""Feature loading: the lighthouse layout, normalisation, temporal encoding, anomalies, padding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from timegrpo.data.formats import load_annotations
from timegrpo.detr.features import (
    FeatureDataset,
    FeatureStore,
    check_samples,
    l2_normalize,
    load_split,
    make_collate,
    npz_shape,
    saliency_targets,
    temporal_encoding,
)


def test_video_features_are_normalised_per_type_concatenated_with_tef(synth_root: Path, make_config) -> None:
    cfg = make_config(synth_root)
    ds = load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    item = ds[0]
    raw0 = np.load(synth_root / "features/f0" / f"{item['sample'].vid}.npz")["features"]
    raw1 = np.load(synth_root / "features/f1" / f"{item['sample'].vid}.npz")["features"]
    v = item["video"].numpy()
    assert v.shape == (len(raw0), 48 + 16 + 2)
    np.testing.assert_allclose(v[:, :48], l2_normalize(raw0), rtol=1e-5)
    np.testing.assert_allclose(v[:, 48:64], l2_normalize(raw1), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v[:, 48:64], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v[:, 64:], temporal_encoding(len(raw0)))
    np.testing.assert_allclose(np.linalg.norm(item["text"].numpy(), axis=1), 1.0, rtol=1e-5)
    # spans are (center, width) over the feature length L * clip_len
    (s, e), = item["sample"].windows
    total = len(raw0) * 2.0
    np.testing.assert_allclose(item["spans"].numpy(), [[(s + e) / 2 / total, (e - s) / total]], rtol=1e-5)
    assert ds.report.counts == {} and ds.report.kept == len(ds)


def test_truncation_and_no_tef(synth_root: Path, make_config) -> None:
    cfg = make_config(synth_root, data={"max_v_len": 10, "temporal_encoding": False, "max_q_len": 2})
    ds = load_split(cfg.data, cfg.resolve, "val", require_windows=False)
    assert max(ds[i]["video"].shape[0] for i in range(len(ds))) == 10
    assert ds[0]["video"].shape[1] == 64 and ds[0]["text"].shape[0] <= 2


def test_npz_shape_reads_header_only(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "a.npz", features=np.zeros((75, 2304), np.float32))
    assert npz_shape(tmp_path / "a.npz", "features") == (75, 2304)
    with pytest.raises(KeyError, match="video_key"):
        npz_shape(tmp_path / "a.npz", "feats")


def _copy(root: Path, tmp: Path) -> Path:
    dst = tmp / "copy"
    shutil.copytree(root, dst)
    return dst


def test_missing_feature_file_errors_or_is_counted(synth_root: Path, tmp_path: Path, make_config) -> None:
    root = _copy(synth_root, tmp_path)
    first = json.loads((root / "annotations/train.jsonl").read_text().splitlines()[0])
    n_same_vid = sum(json.loads(x)["vid"] == first["vid"] for x in (root / "annotations/train.jsonl").read_text().splitlines())
    (root / "features/f1" / f"{first['vid']}.npz").unlink()
    (root / "features/text" / "qid{}.npz".format(json.loads((root / "annotations/train.jsonl").read_text().splitlines()[-1])["qid"])).unlink()
    cfg = make_config(root)
    with pytest.raises(ValueError, match=rf"qid {first['qid']} \(vid {first['vid']}\): no feature file .*f1.*--data.on_bad skip"):
        load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    cfg = make_config(root, data={"on_bad": "skip"})
    ds = load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    assert ds.report.counts == {"missing_video_feature": n_same_vid, "missing_text_feature": 1}
    assert ds.report.dropped == n_same_vid + 1
    n_all = len((root / "annotations/train.jsonl").read_text().splitlines())
    assert len(ds) == n_all - n_same_vid - 1


def test_length_mismatch_is_detected(synth_root: Path, tmp_path: Path, make_config) -> None:
    root = _copy(synth_root, tmp_path)
    first = json.loads((root / "annotations/val.jsonl").read_text().splitlines()[0])
    for t in ("f0", "f1"):
        p = root / "features" / t / f"{first['vid']}.npz"
        x = np.load(p)["features"]
        np.savez(p, features=np.concatenate([x, x]))  # twice as long as duration / clip_len
    cfg = make_config(root, data={"on_bad": "skip"})
    ds = load_split(cfg.data, cfg.resolve, "val", require_windows=True)
    assert ds.report.counts["length_mismatch"] >= 1
    assert first["qid"] not in {int(s.qid) for s in ds.samples}
    # a clip length of 1 s makes every video look twice too long
    cfg = make_config(synth_root, data={"clip_len": 1.0})
    with pytest.raises(ValueError, match="length_mismatch|clips but duration"):
        load_split(cfg.data, cfg.resolve, "val", require_windows=True)


def test_window_past_features_and_missing_windows(synth_root: Path, make_config) -> None:
    samples, _ = load_annotations(str(synth_root / "annotations/val.jsonl"), "moment_detr")
    # truncate the features between the two windows of a two-window query
    two = next(s for s in samples if len(s.windows) == 2 and int(s.windows[1][0] // 2) * 2 > s.windows[0][0])
    clips = int(two.windows[1][0] // 2)
    end = 2.0 * clips
    cfg = make_config(synth_root, data={"max_v_len": clips})
    store = FeatureStore(cfg.data, cfg.resolve)
    kept, rep = check_samples(samples, store, split="val", on_bad="skip", require_windows=True)
    late = sum(all(a >= end for a, _ in s.windows) for s in samples)
    some_late = sum(any(a >= end for a, _ in s.windows) for s in samples) - late
    assert some_late >= 1
    assert rep.counts.get("window_beyond_features", 0) == late and len(kept) == len(samples) - late
    assert rep.counts["window_dropped"] == some_late
    clipped = sum(any(e > end for _, e in s.windows) and all(a < end for a, _ in s.windows) for s in kept)
    assert rep.counts.get("window_clipped", 0) == clipped
    item = FeatureDataset(kept, store, rep)[kept.index(two)]
    assert item["spans"].shape == (1, 2)  # the window past the features is not a target
    samples[0].windows = []
    _, rep = check_samples(samples[:1], store, split="val", on_bad="skip", require_windows=True)
    assert rep.counts == {"no_window": 1}
    _, rep = check_samples(samples[:1], store, split="val", on_bad="skip", require_windows=False)
    assert rep.counts == {}
    cfg = make_config(synth_root, data={"max_v_len": 1})
    with pytest.raises(ValueError, match="every window starts after the features end at 2 s"):
        load_split(cfg.data, cfg.resolve, "val", require_windows=True)


def test_saliency_targets_from_scores_or_windows(synth_root: Path, make_config) -> None:
    cfg = make_config(synth_root)
    ds = load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    s = ds.samples[0]
    sal, graded = saliency_targets(s, ds[0]["video"].shape[0], 2.0)
    assert graded and sal[s.meta["relevant_clip_ids"]].tolist() == [float(sum(x)) for x in s.meta["saliency_scores"]]
    assert sal.sum() == pytest.approx(sum(sum(x) for x in s.meta["saliency_scores"]))


def test_collate_pads_and_masks(synth_root: Path, make_config) -> None:
    cfg = make_config(synth_root)
    ds = load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    items = [ds[i] for i in range(5)]
    b = make_collate(2.0)(items)
    lengths = [it["video"].shape[0] for it in items]
    assert b.video.shape == (5, max(lengths), 66)
    assert b.video_mask.sum(1).tolist() == lengths
    assert b.seconds.tolist() == [2.0 * n for n in lengths]
    assert b.text_mask.sum(1).tolist() == [it["text"].shape[0] for it in items]
    assert torch.all(b.video[~b.video_mask] == 0)
    n_windows = [len(it["sample"].windows) for it in items]
    assert b.spans.shape == (5, max(n_windows), 2) and b.span_mask.sum(1).tolist() == n_windows


def test_label_jitter_moves_train_and_val_labels_only(tmp_path: Path) -> None:
    from timegrpo.detr.config import FeatureSynthConfig
    from timegrpo.detr.synth import synthesize

    clean = synthesize(tmp_path / "clean", FeatureSynthConfig(n_videos=20, seed=4))
    noisy = synthesize(tmp_path / "noisy", FeatureSynthConfig(n_videos=20, seed=4, label_jitter=2.0))
    assert clean["label_iou"] == 1.0 and 0.4 < noisy["label_iou"] < 0.95

    def rows(name: str, split: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / name / "annotations" / f"{split}.jsonl").read_text().splitlines()]

    assert rows("noisy", "test") == rows("clean", "test")  # the test split keeps the true windows
    for split in ("train", "val"):
        moved = 0
        for a, b in zip(rows("clean", split), rows("noisy", split)):
            assert a["qid"] == b["qid"] and a["query"] == b["query"]
            for (s0, e0), (s1, e1) in zip(a["relevant_windows"], b["relevant_windows"]):
                assert abs(s1 - s0) <= 2.0 + 1e-9 and (abs(e1 - e0) <= 2.0 + 1e-9 or e1 - s1 == 0.5)
                moved += (s0, e0) != (s1, e1)
        assert moved > 0
    for f in ("f0", "f1"):  # the features keep the true events
        for p in (tmp_path / "clean/features" / f).iterdir():
            assert np.array_equal(np.load(p)["features"], np.load(tmp_path / "noisy/features" / f / p.name)["features"])
