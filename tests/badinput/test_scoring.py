"""Invalid predicted windows never earn credit; ``--protocol time_r1`` equals Time-R1's evaluation scripts."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from timegrpo.cli import main
from timegrpo.data.schema import Sample
from timegrpo.evaluate.score import score_samples

GT = [Sample(f"q{i}", "v", None, 30.0, "q", [(10.0, 20.0)]) for i in range(5)]


@pytest.mark.parametrize("window", [[float("nan"), float("nan")], [20.0, 10.0], [float("inf"), 25.0],
                                    ["10", "20"], [10.0], "10 to 20", [None, 20.0], [True, 20.0]])
def test_an_invalid_window_scores_zero_and_is_counted(window):
    preds = {"q0": {"qid": "q0", "pred_relevant_windows": [window]}}
    res = score_samples(GT[:1], preds)
    assert res.metrics == {"R1@0.3": 0.0, "R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.0}
    assert res.counts["n_invalid_windows"] == 1


def test_invalid_windows_earn_no_mr_map_on_qvhighlights():
    qv = [Sample(f"q{i}", "v", None, 30.0, "q", [(10.0, 20.0)],
                 meta={"relevant_clip_ids": [5, 6], "saliency_scores": [[1, 1, 1], [2, 2, 2]]}) for i in range(2)]
    bad = {"q0": {"qid": "q0", "pred_relevant_windows": [[float("nan"), float("nan"), 0.9]]},
           "q1": {"qid": "q1", "pred_relevant_windows": [[20.0, 10.0, 0.9]]}}
    res = score_samples(qv, bad, benchmark="qvhighlights")
    assert res.metrics["MR-full-mAP"] == 0.0 and res.metrics["MR-full-R1@0.5"] == 0.0
    assert res.counts["n_invalid_windows"] == 2
    # an invalid top window is a false positive ranked first: a correct second window gets AP 1/2
    mixed = {"q0": {"qid": "q0", "pred_relevant_windows": [[float("nan"), 1.0, 0.9], [10.0, 20.0, 0.5]]},
             "q1": {"qid": "q1", "pred_relevant_windows": [[10.0, 20.0, 0.9]]}}
    res = score_samples(qv, mixed, benchmark="qvhighlights")
    assert res.metrics["MR-full-mAP@0.5"] == pytest.approx(75.0) and res.metrics["MR-full-R1@0.5"] == 50.0


def test_strict_never_falls_back_to_glue_on_grounding():
    preds = {"q0": {"qid": "q0", "completion": "<think>x</think><glue>[(10, 20)]</glue>"}}
    assert score_samples(GT[:1], preds).metrics["mIoU"] == 100.0  # tolerant: VideoChat-R1's glue is read
    assert score_samples(GT[:1], preds, strict=True).metrics["mIoU"] == 0.0


# ------------------------------------------------------------------------------------------- Time-R1 protocol
def time_r1_reference(outputs: list[str], targets: list[list[float]]) -> dict[str, float]:
    """Time-R1's evaluation, transcribed from its description (xiaomi-research/time-r1 evaluate.py
    ``extract_answer``, eval_all.py ``compute_IoU`` and ``calc_score``): the last
    ``(\\d+\\.?\\d*) (to|and) (\\d+\\.?\\d*)`` in the output, IoU inter/union unclamped, score 0 without a pair,
    R1@m the share of IoU > m, mIoU the mean, both x 100."""
    scores = []
    for text, (gs, ge) in zip(outputs, targets):
        found = re.findall(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)", text)
        if not found:
            scores.append(0.0)
            continue
        ps, pe = float(found[-1][0]), float(found[-1][2])
        inter = max(0.0, min(pe, ge) - max(ps, gs))
        union = max(0.0, max(pe, ge) - min(ps, gs))
        scores.append(inter / union)
    out = {f"R1@{m}": 100.0 * sum(s > m for s in scores) / len(scores) for m in (0.3, 0.5, 0.7)}
    out["mIoU"] = float(np.mean(scores) * 100)
    return out


PIECES = ["12 to 18", "10.5 and 22", "14 to 25.5", "<think>", "</think>", "<answer>", "</answer>", " ", "the event ", "12.5", "7", "30.", "0.5", " to ",
          " and ", " TO ", "to", "  to ", "s", "-", "from ", "4.25", "19", " or ", "\n", "18.0", "3"]


def random_output(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 14)))


def test_time_r1_protocol_equals_time_r1_scripts_on_random_outputs(tmp_path, capsys):
    rng = random.Random(0)
    outputs = [random_output(rng) for _ in range(400)]
    outputs += ["<answer>12.5 to 17.8</answer>", "<answer>12.5 TO 17.8</answer>", "<think>3 to 5</think>",
                "<answer>20 to 10</answer>", "12.5s to 17.8s", "<answer>0 to 30</answer>", "1.5 and 19."]
    targets = [[round(rng.uniform(0, 14), 1), round(rng.uniform(15, 30), 1)] for _ in outputs]
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps({"qid": f"q{i}", "vid": "v", "query": "q", "duration": 30.0,
                                       "relevant_windows": [t]}) + "\n" for i, t in enumerate(targets)))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"qid": f"q{i}", "completion": o}) + "\n" for i, o in enumerate(outputs)))
    assert main(["score", "--predictions", str(pred), "--annotations", str(ann), "--protocol", "time_r1",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    ref = time_r1_reference(outputs, targets)
    assert {k: got[k] for k in ref} == pytest.approx(ref, abs=1e-9)
    assert ref["mIoU"] > 10 and ref["R1@0.7"] > 0  # the random outputs hit the windows, not always
    # the default protocol reads them differently (last <answer> block, R1 counts >=)
    assert main(["score", "--predictions", str(pred), "--annotations", str(ann), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mIoU"] != pytest.approx(ref["mIoU"])


def test_time_r1_counts_r1_strictly_above_the_threshold():
    preds = {"q0": {"qid": "q0", "completion": "<answer>10 to 15</answer>"}}  # IoU exactly 0.5
    assert score_samples(GT[:1], preds).metrics["R1@0.5"] == 100.0
    assert score_samples(GT[:1], preds, protocol="time_r1").metrics["R1@0.5"] == 0.0


def test_time_r1_is_for_grounding_only(capsys, shared_data):
    ann = shared_data / "qvhighlights" / "highlight_val_release.jsonl"
    sample = shared_data / "qvhighlights" / "sample_val_preds.jsonl"
    rc = main(["score", "--predictions", str(sample), "--annotations", str(ann), "--protocol", "time_r1",
               "--benchmark", "qvhighlights"])
    err = capsys.readouterr().err
    assert rc == 2 and "protocol 'time_r1' scores grounding only" in err
