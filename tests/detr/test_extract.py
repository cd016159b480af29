"""`timegrpo detr features`: CLIP clip and query features in the layout the GIRL-DETR reader reads, from synthetic
and real videos, with a tiny offline CLIP; then `detr train -> predict -> score` on the real videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from timegrpo.cli import main
from timegrpo.config import core
from timegrpo.data.synthetic import write_mp4
from timegrpo.detr.config import DetrDataConfig, FeatureExtractConfig
from timegrpo.detr.extract import ClipEncoder, extract_features
from timegrpo.detr.features import FeatureStore, l2_normalize
from timegrpo.models.tiny_clip import save_tiny_clip

RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def colour_video(path: Path, segments: list[tuple[tuple[int, int, int], float]], fps: int = 4) -> Path:
    """An mp4 of solid colours: ``[(rgb, seconds), ...]`` one after the other, 64x48."""
    frames = [np.broadcast_to(np.array(rgb, np.uint8), (48, 64, 3)) for rgb, secs in segments
              for _ in range(round(secs * fps))]
    write_mp4(np.stack(frames), path, fps)
    return path


def annotations(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"duration": 10.0, "relevant_windows": [[0, 4]], **r}) + "\n" for r in rows))
    return path


def encode_colour(clip: Path, rgb: tuple[int, int, int]) -> np.ndarray:
    import torch

    frame = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 224, 224)
    return ClipEncoder(str(clip), "cpu").encode_frames(frame)[0]


def run(out: Path, videos: Path, ann: Path, clip: Path, *more: str) -> int:
    return main(["detr", "features", "--videos", str(videos), "--annotations", str(ann), "--out", str(out),
                 "--model", str(clip), "--clip-len", "2", *more])


def test_clips_are_the_frames_at_their_centres(tmp_path, tiny_clip, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    colour_video(videos / "v1.mp4", [(RED, 4.0), (BLUE, 6.0)])  # 5 clips of 2 s: red, red, blue, blue, blue
    ann = annotations(tmp_path / "a.jsonl", [{"qid": 1, "vid": "v1", "query": "a red screen"},
                                             {"qid": "x2", "vid": "v1", "query": "A blue screen turns up."}])
    assert run(tmp_path / "f", videos, ann, tiny_clip) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["videos"], summary["queries"], summary["dim"], summary["computed_videos"]) == (1, 2, 16, 1)
    feats = np.load(tmp_path / "f" / "clip" / "v1.npz")["features"]
    assert feats.shape == (5, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-6)
    red, blue = (l2_normalize(encode_colour(tiny_clip, c)[None])[0] for c in (RED, BLUE))
    for row, want in zip(feats, [red, red, blue, blue, blue]):
        np.testing.assert_allclose(row, want, atol=0.02)  # h264 moves solid colours by a level or two
    assert np.abs(red - blue).max() > 0.2
    # one text file per query, a row per token (start and end tokens included), each of norm 1
    tokens = np.load(tmp_path / "f" / "clip_text" / "qidx2.npz")["last_hidden_state"]
    assert tokens.ndim == 2 and tokens.shape[1] == 16 and tokens.shape[0] >= 4
    np.testing.assert_allclose(np.linalg.norm(tokens, axis=1), 1.0, atol=1e-6)


def test_frames_per_clip_are_averaged(tmp_path, tiny_clip):
    videos = tmp_path / "videos"
    videos.mkdir()
    colour_video(videos / "v1.mp4", [(RED, 5.0), (BLUE, 5.0)])  # clip 2 = [4, 6): frames at 4.5 (red), 5.5 (blue)
    ann = annotations(tmp_path / "a.jsonl", [{"qid": 1, "vid": "v1", "query": "q"}])
    cfg = FeatureExtractConfig(videos=str(videos), annotations=str(ann), out=str(tmp_path / "f"),
                               model=str(tiny_clip), frames_per_clip=2, device="cpu")
    extract_features(cfg)
    feats = np.load(tmp_path / "f" / "clip" / "v1.npz")["features"]
    red, blue = encode_colour(tiny_clip, RED), encode_colour(tiny_clip, BLUE)
    np.testing.assert_allclose(feats[2], l2_normalize(((red + blue) / 2)[None])[0], atol=0.02)
    np.testing.assert_allclose(feats[1], l2_normalize(red[None])[0], atol=0.02)


def test_resume_settings_and_bad_videos(tmp_path, tiny_clip, capsys, broken_videos):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        colour_video(videos / f"{name}.mp4", [(RED, 2.0), (BLUE, 2.0)])
    ann = annotations(tmp_path / "a.jsonl", [{"qid": i, "vid": v, "query": f"q{i}", "duration": 4.0}
                                             for i, v in enumerate("aab")])
    out = tmp_path / "f"
    assert run(out, videos, ann, tiny_clip) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["computed_videos"], first["computed_queries"]) == (2, 3)
    before = (out / "clip" / "a.npz").stat().st_mtime_ns
    (out / "clip" / "b.npz").write_bytes((out / "clip" / "b.npz").read_bytes()[:50])  # a kill mid-copy
    (out / "clip_text" / "qid1.npz").unlink()
    assert run(out, videos, ann, tiny_clip) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["computed_videos"], again["computed_queries"]) == (1, 1)
    assert (out / "clip" / "a.npz").stat().st_mtime_ns == before
    assert not list(out.rglob(".*.tmp"))
    # other settings never mix into a folder
    assert run(out, videos, ann, tiny_clip, "--frames-per-clip", "2") == 2
    assert "frames_per_clip 1 (now 2)" in capsys.readouterr().err
    # an unreadable video: one line naming it, or left out and listed with --on-bad skip
    broken = broken_videos(videos / "a.mp4", tmp_path / "broken")
    (videos / "c.mp4").write_bytes(broken["corrupt"].read_bytes())
    ann2 = annotations(tmp_path / "b.jsonl", [{"qid": 7, "vid": "c", "query": "q", "duration": 4.0},
                                              {"qid": 8, "vid": "a", "query": "q", "duration": 4.0}])
    assert run(out, videos, ann2, tiny_clip) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("timegrpo detr") and "c.mp4" in last and "vid c" in last and "Traceback" not in err
    assert run(out, videos, ann2, tiny_clip, "--on-bad", "skip") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["videos"], summary["queries"], summary["skipped_videos"]) == (1, 1, 1)
    (skipped,) = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert skipped["vid"] == "c" and skipped["kind"] == "unreadable_video"
    assert not (out / "clip_text" / "qid7.npz").exists()


def test_a_model_that_cannot_load_is_one_line(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    colour_video(videos / "v1.mp4", [(RED, 4.0)])
    ann = annotations(tmp_path / "a.jsonl", [{"qid": 1, "vid": "v1", "query": "q", "duration": 4.0}])
    assert run(tmp_path / "f", videos, ann, tmp_path / "no-such-model") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("timegrpo detr: error: cannot load the CLIP model") and "--model" in err


def test_synthetic_benchmark_videos(tmp_path, tiny_clip, capsys):
    from timegrpo.data.synthetic import SynthConfig, generate

    synth = tmp_path / "synth"
    generate(SynthConfig(n=3, seed=0, val_size=0, test_size=0, min_duration=7, max_duration=11), synth)
    assert run(tmp_path / "f", synth, synth / "train.jsonl", tiny_clip, "--clip-len", "1") == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 3
    for line in (synth / "train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        feats = np.load(tmp_path / "f" / "clip" / f"{rec['vid']}.npz")["features"]
        assert abs(len(feats) - rec["duration"]) <= 1  # 1 s clips


# ----------------------------------------------------------------------------------------------- real videos

REAL = ("OHOFG", "v_TpB_zMG3XBA", "v_rBMQFpHspmo", "charades")


@pytest.fixture(scope="module")
def real_annotations(shared_data, tmp_path_factory) -> Path:
    """The real annotations of the three annotated shared videos (6 Charades-STA test queries, 9 ActivityNet
    Captions train sentences) as one moment_detr jsonl, plus one query written here for the unlabelled
    ``charades.mp4`` (its whole length, so that all four videos are used)."""
    from timegrpo.data.formats import load_annotations

    samples = [s for path in ("charades_sta/charades_sta_test.txt", "activitynet_captions/train.json")
               for s in load_annotations(shared_data / path, on_bad="clip")[0] if s.vid in REAL]
    rows = [{"qid": s.qid, "vid": s.vid, "query": s.query, "duration": s.duration,
             "relevant_windows": [list(w) for w in s.windows]} for s in samples]
    rows.append({"qid": "charades_0", "vid": "charades", "query": "a person in a room", "duration": 30.7,
                 "relevant_windows": [[0.0, 30.7]]})
    path = tmp_path_factory.mktemp("real") / "real.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_real_videos_load_in_the_detr_reader_unchanged(tmp_path, tiny_clip, shared_data, real_annotations,
                                                       capsys):
    out = tmp_path / "f"
    assert run(out, shared_data / "videos", real_annotations, tiny_clip) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["videos"], summary["queries"]) == (4, 16)
    lengths = {v: len(np.load(out / "clip" / f"{v}.npz")["features"]) for v in REAL}
    # decoded lengths (README of the shared data): 35.1, 163.7, 144.7 and 30.7 s in 2 s clips
    assert lengths == {"OHOFG": 18, "v_TpB_zMG3XBA": 82, "v_rBMQFpHspmo": 73, "charades": 16}
    data = core.from_dict(DetrDataConfig, {"video_feat_dirs": [str(out / "clip")],
                                           "text_feat_dir": str(out / "clip_text"), "max_v_len": None})
    store = FeatureStore(data, lambda p: None if p is None else Path(p))
    for vid in REAL:
        stored = np.load(out / "clip" / f"{vid}.npz")["features"]
        np.testing.assert_allclose(store.video(vid)[:, :-2], stored, atol=1e-6)  # + the 2 temporal columns
    tokens = np.load(out / "clip_text" / "qidOHOFG_1.npz")["last_hidden_state"]
    np.testing.assert_allclose(store.text("OHOFG_1"), tokens, atol=1e-6)


def test_features_then_detr_train_predict_score_on_the_real_videos(tmp_path, tiny_clip, shared_data,
                                                                    real_annotations, capsys):
    feats = tmp_path / "f"
    assert run(feats, shared_data / "videos", real_annotations, tiny_clip) == 0
    settings = json.loads(capsys.readouterr().out)["detr"]
    recipe = {"seed": 0, "threads": 1, "device": "cpu", "out_dir": str(tmp_path / "run"),
              "data": {"train": str(real_annotations), "test": str(real_annotations), "max_v_len": None,
                       "video_feat_dirs": settings["data.video_feat_dirs"],
                       "text_feat_dir": settings["data.text_feat_dir"], "clip_len": settings["data.clip_len"]},
              "model": {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 1},
              "train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "ema_decay": 0.5}}
    (tmp_path / "detr.yaml").write_text(json.dumps(recipe))
    assert main(["detr", "train", "--config", str(tmp_path / "detr.yaml")]) == 0
    assert main(["detr", "predict", "--config", str(tmp_path / "detr.yaml")]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    preds = [json.loads(x) for x in Path(predicted["predictions"]).read_text().splitlines()]
    assert len(preds) == 16 and all(len(p["pred_relevant_windows"]) == 10 for p in preds)
    assert main(["score", "--predictions", predicted["predictions"], "--annotations", str(real_annotations),
                 "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n_scored"] == 16 and scored["n_missing_prediction"] == 0
    # the command that scores any predictions file agrees with the DETR's own evaluation of the same windows
    assert scored["mIoU"] == pytest.approx(predicted["metrics"]["mIoU"], abs=1e-6)
    assert scored["R1@0.5"] == pytest.approx(predicted["metrics"]["R1@0.5"], abs=1e-6)
