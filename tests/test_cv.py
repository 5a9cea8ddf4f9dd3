"""thyrocam cv: case-level stratified folds, the descriptor logistic regression, cv.json/cv.html."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from disc_manifest import disc_manifest
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
        # against the largest outline only: never more hits than against either panel's
        pairs = zip(m["autobox_hit_rate_largest"], m["autobox_hit_rate"], strict=True)
        assert all(a <= b for a, b in pairs)
        assert 0.0 <= m["centre_prior_inside_mean"] <= 1.0
        assert 0.0 <= m["cam_empty_share_mean"] <= 1.0
        assert 0.0 <= m["descriptor_accuracy_mean"] <= 1.0
        # the fold's outline regression, given the network's own outline of each frame
        assert all(0.0 <= a <= 1.0 for a in m["outline_lr_auto_auc"])
        assert all(0.0 <= a <= 1.0 for a in m["image_plus_outline_lr_auc"])
    assert "dice" not in saved["models"]["clinical"]
    assert "outline_lr_auto_auc" not in saved["models"]["clinical"]
    assert result["models"]["image"]["auc"] == saved["models"]["image"]["auc"]
    html = (out / "cv.html").read_text()
    assert "descriptor_lr" in html and "<script" not in html
    # one row per measure, one column per model; a measure no model has is left out
    header = html.split("<th>measure</th>", 1)[1].split("</tr>", 1)[0]
    assert [n for n in CV_MODELS if f"<th>{n}</th>" in header] == list(CV_MODELS)
    assert "<td>outline lr auto auc</td>" in html and "<td>dice</td>" in html
    assert "<td>autobox hit rate</td>" in html
    assert not (out / "runs").exists()  # fold networks are written only when asked


def test_cli_cv_save_runs_writes_loadable_fold_runs(
    synth_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cv"
    args = ["cv", str(synth_dir), "--out", str(out), "--folds", "2", "--models", "image"]
    args += ["--epochs", "1", "--image-size", "64", "--batch-size", "8", "--preprocess", "roi"]
    assert main([*args, "--device", "cpu", "--no-progress", "--save-runs"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "cv.json").read_text())
    samples, _, _ = prepare_samples(synth_dir)
    by_case = {s.case_id: s for s in samples}
    tested: set[str] = set()
    for k in range(2):
        run = out / "runs" / f"fold{k}-image"
        split = json.loads((run / "split.json").read_text())
        assert split["fold"] == k and not set(split["train"]) & set(split["test"])
        assert set(split["train"]) | set(split["test"]) == set(by_case)
        tested |= set(split["test"])
        # the run's held-out scores are the fold's row of cv.json
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["auc"] == saved["models"]["image"]["auc"][k]
        assert metrics["dice"] == saved["models"]["image"]["dice"][k]
        meta = json.loads((run / "meta.json").read_text())
        assert meta["modalities"] == "image" and "outline" in meta["heads"]
        assert meta["outline_input"]["mode"] == "letterbox"
        # an ordinary run: predict a held-out frame through the CLI, boxed automatically
        frame = by_case[split["test"][0]].image_path
        assert main(["predict", str(run), str(frame), "--device", "cpu"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["roi_source"] in ("auto", "frame")
        assert 0.0 <= printed["probability"] <= 1.0
    assert tested == set(by_case)  # every case held out once
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["fold0-image", "fold1-image"]
    # the saved folds are what benchmarks/autobox_study.py re-boxes, without training
    study = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "autobox_study.py"))
    assert study["main"]([str(out), "--ddti", str(synth_dir)]) == 0
    printed = capsys.readouterr().out
    outlined = sum(1 for s in samples if s.polygons)
    assert f"2 fold networks, {outlined} held-out frames with an outline" in printed
    assert "| the predictor's (search, then close-up) |" in printed
    # ... and what benchmarks/cam_study.py explains with every method of the table
    from thyrocam.explain import METHODS

    study = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "cam_study.py"))
    assert study["main"]([str(out), "--ddti", str(synth_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"2 fold networks of {out}"
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:]}
    assert set(rows) == set(METHODS)
    for name, (inside, area, _, prior, empty) in rows.items():
        assert 0 <= empty <= 1, name
        if empty < 1:  # over the maps with positive evidence (NaN when a fold has none)
            shares = np.array([inside, area, prior])
            assert np.all((shares[~np.isnan(shares)] >= 0) & (shares[~np.isnan(shares)] <= 1))
    assert any(not np.isnan(v).any() for v in rows.values())


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


def test_autobox_iou_counts_either_panels_outline_and_reports_the_largest() -> None:
    from thyrocam.imaging import box_iou
    from thyrocam.predictor.autobox import autobox_ious

    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    # A two-panel frame: the nodule outlined on the left (larger) and on the right.
    left, right = (10, 10, 60, 50), (110, 12, 150, 48)
    assert autobox_ious(right, [left, right]) == (1.0, 0.0)
    assert autobox_ious(left, [left, right]) == (1.0, 1.0)
    assert autobox_ious(None, [left, right]) == (0.0, 0.0)
    # A box spanning both panels matches neither well.
    best, largest = autobox_ious((10, 10, 150, 50), [left, right])
    assert best == pytest.approx(max(box_iou((10, 10, 150, 50), o) for o in (left, right)))
    assert best < 0.5 and largest < 0.5


@pytest.mark.parametrize("dark_is_malignant", [True, False])
def test_outline_lr_reads_the_pixels_inside_the_outline(
    tmp_path: Path, dark_is_malignant: bool
) -> None:
    manifest = disc_manifest(tmp_path, dark_is_malignant=dark_is_malignant)
    out = tmp_path / "cv"
    result = cross_validate(
        manifest, out=out, folds=3, config=TrainConfig(device="cpu"), models=("outline_lr",)
    )
    aucs = result["models"]["outline_lr"]["auc"]
    assert len(aucs) == 3
    if dark_is_malignant:  # the level against the surroundings separates them
        assert min(aucs) == pytest.approx(1.0)
    else:  # nothing in the pixels tells the labels apart
        assert result["models"]["outline_lr"]["auc_mean"] < 0.8
    html = (out / "cv.html").read_text()
    assert "<th>outline_lr</th>" in html and "<td>auc</td>" in html
    assert "<td>dice</td>" not in html  # no network ran: no outline to score


def _crops(synth_dir: Path, n: int):
    """The first ``n`` synthetic frames as 64 px nodule crops with their outline masks."""
    from thyrocam.clinical import default_cat_maps
    from thyrocam.data import ThyroidDataset
    from thyrocam.imaging import Preprocessing

    samples, _, _ = prepare_samples(synth_dir)
    return ThyroidDataset(
        samples[:n], preprocessing=Preprocessing(mode="roi", size=64),
        cat_maps=default_cat_maps(), targets=True,
    )  # fmt: skip


def test_cam_energy_counts_maps_without_positive_evidence(synth_dir: Path) -> None:
    from thyrocam.cv.networks import cam_energy
    from thyrocam.model import ThyroidNet

    ds = _crops(synth_dir, 6)
    torch.manual_seed(2)
    model = ThyroidNet(arch="resnet10n", clinical_dim=28).eval()
    seen = cam_energy(model, ds, torch.device("cpu"), cam_cases=6)
    assert 0.0 <= seen["cam_empty_share"] < 1.0 and 0.0 <= seen["cam_energy_inside"] <= 1.0
    # A logit that ignores the image has no positive evidence anywhere: every map is
    # empty, and the energy shares (over non-empty maps) are not reported as if measured.
    with torch.no_grad():
        model.img_proj[0].weight.zero_()
        model.img_proj[0].bias.zero_()
    assert cam_energy(model, ds, torch.device("cpu"), cam_cases=6) == {"cam_empty_share": 1.0}


def test_cam_energy_reads_any_method_of_the_table(synth_dir: Path) -> None:
    from thyrocam.cv.networks import cam_energy
    from thyrocam.errors import InputError
    from thyrocam.explain import METHODS
    from thyrocam.model import ThyroidNet

    ds = _crops(synth_dir, 4)
    cpu = torch.device("cpu")
    torch.manual_seed(3)
    model = ThyroidNet(
        arch="resnet10n", clinical_dim=28, heads=("malignancy", "outline"), pool="outline"
    ).eval()
    seen = {}
    for name in ("gradcam", "hirescam", "layercam"):
        # The same share computed here from the table's engine and layers, map by map.
        m, inside = METHODS[name], []
        with torch.enable_grad(), m.cam_class(model, m.layers(model)) as engine:
            for i in range(len(ds)):
                item = ds[i]
                mask = item["mask"][0].numpy() > 0.5
                cam, _ = engine(item["image"][None], clinical=item["clinical"][None])
                if item["has_mask"] and mask.any() and cam.sum() > 0:
                    inside.append(float(cam[mask].sum() / cam.sum()))
        assert inside, name
        seen[name] = cam_energy(model, ds, cpu, cam_cases=len(ds), method=name)
        assert seen[name]["cam_energy_inside"] == pytest.approx(np.mean(inside), abs=1e-6)
    # Each method's share is its own: the methods' maps differ on this network.
    assert len({round(seen[n]["cam_energy_inside"], 5) for n in seen}) == 3
    assert cam_energy(model, ds, cpu, cam_cases=len(ds), method="Grad-CAM") == seen["gradcam"]
    with pytest.raises(InputError) as err:
        cam_energy(model, ds, cpu, cam_cases=len(ds), method="saliency")
    assert err.value.field == "method" and "'saliency'" in str(err.value)
