"""The official QVHighlights evaluation, reproduced: on the official sample predictions (numbers in
../shared/data/README.md) and on perturbed prediction files whose expected numbers come from running
jayleicn/moment_detr ``standalone_eval/eval.py`` itself (with scikit-learn 1.9.1, single process) on the same
files; plus hand-worked AP / HIT@1 cases."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from timegrpo.cli import main
from timegrpo.metrics.qvhighlights import (
    highlight_detail,
    moment_retrieval_detail,
    qvhighlights_metrics,
    saliency_labels,
)

OFFICIAL_SAMPLE = {
    "MR-full-R1@0.5": 53.94, "MR-full-R1@0.7": 34.84, "MR-full-mAP": 32.2, "MR-full-mAP@0.5": 54.96,
    "MR-full-mAP@0.75": 31.01, "MR-long-mAP": 41.11, "MR-middle-mAP": 32.3, "MR-short-mAP": 3.28,
    "HL-min-Fair-mAP": 67.77, "HL-min-Fair-Hit1": 66.45, "HL-min-Good-mAP": 58.09, "HL-min-Good-Hit1": 64.45,
    "HL-min-VeryGood-mAP": 35.65, "HL-min-VeryGood-Hit1": 55.55,
}

# Official brief of the perturbed files made by _variant(seed) below, from moment_detr's own eval.py.
OFFICIAL_VARIANTS = {
    2: {"MR-full-R1@0.5": 28.32, "MR-full-R1@0.7": 23.94, "MR-full-mAP": 38.39, "MR-full-mAP@0.5": 51.88,
        "MR-full-mAP@0.75": 37.33, "MR-long-mAP": 43.45, "MR-middle-mAP": 36.4, "MR-short-mAP": 17.3,
        "HL-min-Fair-mAP": 64.62, "HL-min-Fair-Hit1": 54.65, "HL-min-Good-mAP": 55.18, "HL-min-Good-Hit1": 53.23,
        "HL-min-VeryGood-mAP": 33.7, "HL-min-VeryGood-Hit1": 45.81},
    3: {"MR-full-R1@0.5": 49.81, "MR-full-R1@0.7": 29.29, "MR-full-mAP": 26.8, "MR-full-mAP@0.5": 49.78,
        "MR-full-mAP@0.75": 24.81, "MR-long-mAP": 38.19, "MR-middle-mAP": 24.96, "MR-short-mAP": 2.13,
        "HL-min-Fair-mAP": 63.43, "HL-min-Fair-Hit1": 61.74, "HL-min-Good-mAP": 54.15, "HL-min-Good-Hit1": 59.55,
        "HL-min-VeryGood-mAP": 33.12, "HL-min-VeryGood-Hit1": 51.55},
    5: {"MR-full-R1@0.5": 49.55, "MR-full-R1@0.7": 28.19, "MR-full-mAP": 11.06, "MR-full-mAP@0.5": 23.59,
        "MR-full-mAP@0.75": 8.81, "MR-long-mAP": 15.8, "MR-middle-mAP": 10.36, "MR-short-mAP": 1.57,
        "HL-min-Fair-mAP": 61.01, "HL-min-Fair-Hit1": 65.03, "HL-min-Good-mAP": 51.65, "HL-min-Good-Hit1": 62.97,
        "HL-min-VeryGood-mAP": 31.45, "HL-min-VeryGood-Hit1": 52.58},
}


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def qvh(shared_data):
    preds = _jsonl(shared_data / "qvhighlights" / "sample_val_preds.jsonl")
    gts = {d["qid"]: d for d in _jsonl(shared_data / "qvhighlights" / "highlight_val_release.jsonl")}
    return preds, gts


def _variant(preds, gts, seed):
    """Perturbed copies of the sample predictions (ties, shuffles, truncation, copies of GT, odd saliency)."""
    rng = random.Random(seed)
    out = []
    for p in preds:
        p, g = json.loads(json.dumps(p)), gts[p["qid"]]
        w, r = p["pred_relevant_windows"], rng.random()
        if seed % 5 == 2:  # shuffle, drop / extend windows, exact GT copies, saliency cut or padded
            rng.shuffle(w)
            if r < 0.3:
                w = w[: rng.randint(1, 4)]
            elif r < 0.5:
                w = w + [[s + 2, e + 2, sc * 0.5] for s, e, sc in w[:5]]
            if r > 0.8:
                w = [[a, b, 1.0] for a, b in g["relevant_windows"]] + w
            sal = p["pred_saliency_scores"]
            p["pred_saliency_scores"] = sal[: rng.randint(1, len(sal))] if r < 0.2 else sal + [0.5] * rng.randint(0, 5)
        elif seed % 5 == 3:  # jitter, constant scores, duplicated windows, all-zero saliency
            w = [[max(0, s + rng.uniform(-5, 5)), e + rng.uniform(-5, 5), 0.5 if r < 0.3 else sc] for s, e, sc in w]
            w = [[min(a, b), max(a, b), c] for a, b, c in w]
            if r < 0.2:
                w = [w[0]] * 3 + w
            if r > 0.9:
                p["pred_saliency_scores"] = [0.0] * len(p["pred_saliency_scores"])
        else:  # gaussian noise on windows, random scores, noisy saliency
            w = [[s + rng.gauss(0, 3), e + rng.gauss(0, 3), rng.random()] for s, e, sc in w]
            w = [[min(a, b), max(a, b), c] for a, b, c in w]
            p["pred_saliency_scores"] = [x + rng.gauss(0, 0.3) for x in p["pred_saliency_scores"]]
        p["pred_relevant_windows"] = w
        out.append(p)
    return out


def _metrics(preds, gts):
    g = [gts[p["qid"]] for p in preds]
    return qvhighlights_metrics(
        [p["pred_relevant_windows"] for p in preds], [x["relevant_windows"] for x in g],
        [p["pred_saliency_scores"] for p in preds],
        [saliency_labels(x["duration"], x["relevant_clip_ids"], x["saliency_scores"]) for x in g],
    )


def test_official_sample_numbers(qvh):
    got = _metrics(*qvh)
    assert got == OFFICIAL_SAMPLE
    assert list(got) == list(OFFICIAL_SAMPLE)  # the official brief's key order


@pytest.mark.parametrize("seed", sorted(OFFICIAL_VARIANTS))
def test_perturbed_predictions_match_the_official_script(qvh, seed):
    preds, gts = qvh
    assert _metrics(_variant(preds, gts, seed), gts) == OFFICIAL_VARIANTS[seed]


def test_score_command_reproduces_the_official_numbers(shared_data, capsys, tmp_path):
    md = tmp_path / "metrics.md"
    rc = main(["score", "--predictions", str(shared_data / "qvhighlights" / "sample_val_preds.jsonl"),
               "--annotations", str(shared_data / "qvhighlights" / "highlight_val_release.jsonl"),
               "--json", "--out-md", str(md)])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    assert {k: got[k] for k in OFFICIAL_SAMPLE} == OFFICIAL_SAMPLE
    assert got["R1@0.5"] == pytest.approx(53.94, abs=0.005) and got["R1@0.7"] == pytest.approx(34.84, abs=0.005)
    assert got["n_scored"] == 1550 and got["n_missing_prediction"] == 0 and got["n_unparsed"] == 0
    assert "| MR-full-mAP | 32.20 |" in md.read_text()


# ------------------------------------------------------------------------------------------- hand-worked


def _ap(pred, gt):
    return moment_retrieval_detail([pred], [gt])["full"]["MR-mAP"]


def test_mr_ap_hand_worked():
    # one GT, a hit then a duplicate: precision 1 at recall 1 -> AP 1 at every threshold
    assert _ap([[0, 10, 0.9], [0, 10, 0.8]], [[0, 10]])["average"] == 100.0
    # a miss ranked above a hit: recall reaches 1 at precision 1/2 -> AP 0.5
    assert _ap([[20, 30, 0.9], [0, 10, 0.5]], [[0, 10]])["average"] == 50.0
    # ranking is by score, not by list order
    assert _ap([[0, 10, 0.5], [20, 30, 0.9]], [[0, 10]])["average"] == 50.0
    # two GTs, one found: recall 1/2 at precision 1 -> AP 0.5
    assert _ap([[0, 10, 0.9]], [[0, 10], [20, 30]])["average"] == 50.0
    # IoU 0.6 ([0,6] vs [0,10]): a hit up to threshold 0.6 (3 of 10 thresholds) -> 30
    assert _ap([[0, 6, 0.9]], [[0, 10]]) == {**{k: 100.0 for k in ("0.5", "0.55", "0.6")},
                                              **{k: 0.0 for k in ("0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95")},
                                              "average": 30.0}


def test_mr_only_the_first_ten_windows_count():
    pred = [[50, 60, 1.0 - i / 100] for i in range(10)] + [[0, 10, 0.001]]
    assert _ap(pred, [[0, 10]])["average"] == 0.0


def test_mr_length_ranges_and_r1():
    # query 0: a 4 s GT (short), query 1: a 20 s GT (middle); both found exactly
    out = moment_retrieval_detail([[[0, 4, 1.0]], [[0, 20, 1.0]]], [[[0, 4]], [[0, 20]]])
    assert out["short"]["MR-mAP"]["average"] == 100.0 and out["middle"]["MR-mAP"]["average"] == 100.0
    assert out["long"]["MR-mAP"]["average"] == 0.0  # no query in range
    assert out["full"]["MR-R1"]["0.7"] == 100.0
    # the R1 GT is the best-overlapping window: [0, 4] vs GTs [10, 20] and [0, 5] -> IoU 0.8
    r1 = moment_retrieval_detail([[[0, 4, 1.0]]], [[[10, 20], [0, 5]]])["full"]["MR-R1"]
    assert r1["0.8"] == 100.0 and r1["0.85"] == 0.0


def test_missing_prediction_counts_as_zero():
    out = moment_retrieval_detail([[[0, 10, 1.0]], []], [[[0, 10]], [[0, 10]]])
    assert out["full"]["MR-mAP"]["average"] == 50.0 and out["full"]["MR-R1"]["0.5"] == 50.0
    official = moment_retrieval_detail([[[0, 10, 1.0]], []], [[[0, 10]], [[0, 10]]], empty_as_zero=False)
    assert official["full"]["MR-mAP"]["average"] == 100.0  # the official script leaves the empty one out


def test_hl_hand_worked():
    # 4 clips (duration 8 s); rater scores: clip0 (4, 2, 0), clip2 (4, 3, 0); others 0
    gt = saliency_labels(8.0, [0, 2], [[4, 2, 0], [4, 3, 0]])
    out = highlight_detail([[0.9, 0.8, 0.7, 0.1]], [gt])
    # VeryGood (>= 4), rater 0 positives {0, 2}; ranking 0,1,2,3 -> precision 1 at clip 0, 2/3 at clip 2:
    # AP = (1 + 2/3) / 2; raters 1 and 2 have no positive -> AP 0. mean = (5/6) / 3 = 27.78
    assert out["HL-min-VeryGood"] == {"HL-mAP": 27.78, "HL-Hit1": 100.0}
    # Fair (>= 2): rater 0 {0, 2} -> 5/6, rater 1 {0, 2} -> 5/6, rater 2 none -> 0; mean 5/9
    assert out["HL-min-Fair"]["HL-mAP"] == 55.56
    # ties are one threshold: scores equal on clips 0, 1 -> precision 1/2 there, recall 1/2 (rater 0 VeryGood),
    # then clip 2 alone -> 2/3; interpolated: (2/3 + 2/3) / 2 = 2/3 -> with two empty raters, 22.22
    tied = highlight_detail([[0.5, 0.5, 0.4, 0.1]], [gt])
    assert tied["HL-min-VeryGood"]["HL-mAP"] == 22.22


def test_hl_top_clip_past_the_video_is_a_miss():
    gt = saliency_labels(4.0, [0, 1], [[4, 4, 4], [4, 4, 4]])  # 2 clips, both positive for every rater
    out = highlight_detail([[0.1, 0.2, 0.9]], [gt])  # top clip index 2 does not exist
    assert out["HL-min-VeryGood"]["HL-Hit1"] == 0.0
    assert out["HL-min-VeryGood"]["HL-mAP"] == 100.0  # all positive -> AP 1 (official get_ap)


def test_saliency_labels_shape():
    assert saliency_labels(150, [74], [[1, 2, 3]]).shape == (75, 3)
    assert np.array_equal(saliency_labels(5.9, [], []), np.zeros((2, 3)))
