"""thyrocam cv: case-level stratified folds, the descriptor logistic regression, cv.json/cv.html."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from thyrocam.cli import main
from thyrocam.cv import CV_MODELS, case_folds, cross_validate, fit_logistic
from thyrocam.data import prepare_samples
from thyrocam.errors import DataError
from thyrocam.train import TrainConfig


def test_case_folds_are_stratified_and_keep_cases_together(synth_dir: Path) -> None:
    samples, _, _ = prepare_samples(synth_dir)
    folds = case_folds(samples, folds=3, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(len(samples)))
    cases = [{samples[i].case_id for i in f} for f in folds]
    assert all(not (a & b) for j, a in enumerate(cases) for b in cases[j + 1 :])
    for cls in (0, 1):
        per_fold = [len({samples[i].case_id for i in f if samples[i].label == cls}) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert case_folds(samples, folds=3, seed=1) == folds  # seeded
    with pytest.raises(DataError):
        case_folds(samples, folds=len(samples) + 1)


def test_logistic_regression_reaches_its_optimum() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x @ np.array([2.0, -1.0, 0.0]) + 0.3 * rng.normal(size=200) > 0).astype(np.float64)
    w, b = fit_logistic(x, y, l2=1.0)
    # The gradient of the (class-weighted, L2) objective vanishes at the solution.
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    n_pos = y.sum()
    weights = torch.where(yt > 0, 200 / (2 * n_pos), 200 / (2 * (200 - n_pos)))
    loss = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor(x) @ wt + bt, yt, weight=weights, reduction="sum"
        )
        + 0.5 * (wt * wt).sum()
    )
    loss.backward()
    assert float(wt.grad.abs().max()) < 1e-3 and abs(float(bt.grad)) < 1e-3
    assert w[0] > 1.0 and w[1] < -0.5 and abs(w[2]) < 0.5


def test_cv_writes_json_and_html(synth_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1,
        image_size=64,
        batch_size=8,
        preprocess="roi",
        device="cpu",
        weights=None,
        progress=False,
    )
    out = tmp_path / "cv"
    result = cross_validate(synth_dir, out=out, folds=2, config=config, cam_cases=3)
    saved = json.loads((out / "cv.json").read_text())
    assert saved["folds"] == 2 and set(saved["models"]) == set(CV_MODELS)
    for name in CV_MODELS:
        m = saved["models"][name]
        assert len(m["auc"]) == 2
        assert m["auc_mean"] == pytest.approx(np.mean(m["auc"]))
        assert m["auc_sd"] == pytest.approx(np.std(m["auc"]))
        assert len(m["sensitivity"]) == 2 and len(m["specificity"]) == 2
    for name in ("both", "image"):
        m = saved["models"][name]
        assert all(0.0 <= d <= 1.0 for d in m["dice"])
        assert all(0.0 <= r <= 1.0 for r in m["autobox_hit_rate"])
        assert 0.0 <= m["centre_prior_inside_mean"] <= 1.0
        assert 0.0 <= m["descriptor_accuracy_mean"] <= 1.0
    assert "dice" not in saved["models"]["clinical"]
    assert result["models"]["image"]["auc"] == saved["models"]["image"]["auc"]
    html = (out / "cv.html").read_text()
    assert "descriptor_lr" in html and "<script" not in html


def test_cli_cv_rejects_bad_models_and_writes_nothing(
    synth_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cv"
    assert main(["cv", str(synth_dir), "--out", str(out), "--models", "both,nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "descriptor_lr" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["cv", str(synth_dir), "--out", str(out), "--folds", "1"]) == 2
    assert not out.exists()


def test_autobox_iou_is_the_largest_components_box_overlap() -> None:
    from thyrocam.cv import _box_ious

    truth = torch.zeros(3, 1, 20, 20, dtype=torch.bool)
    pred = torch.zeros_like(truth)
    truth[:, 0, 4:12, 4:12] = True  # an 8x8 nodule
    pred[0, 0, 4:12, 4:12] = True  # found exactly
    pred[1, 0, 4:12, 8:16] = True  # shifted by half: IoU 32 / 96
    pred[1, 0, 0, 0] = True  # a speck elsewhere: not the largest component
    # frame 2: nothing found -> IoU 0; a frame without an outline is not counted
    ious = _box_ious(pred, truth, torch.tensor([1.0, 1.0, 1.0]))
    assert ious == pytest.approx([1.0, 32 / 96, 0.0])
    assert _box_ious(pred, truth, torch.tensor([0.0, 1.0, 0.0])) == pytest.approx([32 / 96])
