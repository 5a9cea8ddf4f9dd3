"""The evaluation report: metrics.json, a self-contained report.html, ablation checks, CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from thyrocam.data import Sample
from thyrocam.errors import InputError
from thyrocam.report import (
    BASELINES,
    bootstrap_auc,
    parse_ablation,
    results_by_grade,
    select_gallery,
    write_report,
)

METHODS = ("gradcam", "layercam-fused")


@pytest.fixture(scope="module")
def image_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_roi_run``'s image-only twin: same data, seed and split."""
    from thyrocam.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny_roi_image"
    config = TrainConfig(
        epochs=1,
        image_size=64,
        batch_size=8,
        preprocess="roi",
        progress=False,
        device="cpu",
        weights=None,
        modalities="image",
    )
    train(synth_dir, out=out, config=config)
    return out


@pytest.fixture(scope="module")
def report_dir(
    tiny_roi_run: Path, image_run: Path, synth_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("report")
    page = write_report(
        tiny_roi_run,
        synth_dir,
        out=out,
        device="cpu",
        ablation={"image": image_run},
        methods=METHODS,
        max_cases=2,
        gallery=2,
    )
    assert page == out / "report.html"
    return out


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path.name} holds {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_metrics_json_matches_evaluate(report_dir: Path, tiny_roi_run: Path, synth_dir: Path):
    from thyrocam.evaluate import evaluate

    metrics = _strict_json(report_dir / "metrics.json")
    expected = evaluate(tiny_roi_run, synth_dir, device="cpu")
    ev = metrics["evaluation"]
    assert metrics["subset"] == expected["subset"] == "test split"
    for key in ("n", "n_malignant", "auc", "sensitivity", "specificity", "confusion"):
        assert ev[key] == expected[key], key
    assert metrics["label_definition"] == expected["label_definition"]
    assert ev["modalities"] == "both"


def test_ablation_scores_the_same_images(report_dir: Path, image_run: Path) -> None:
    metrics = _strict_json(report_dir / "metrics.json")
    models = metrics["ablation"]
    assert list(models) == ["combined", "image-only"]
    assert models["image-only"]["modalities"] == "image"
    assert models["image-only"]["run"] == str(image_run)
    assert models["image-only"]["n"] == models["combined"]["n"]
    assert models["combined"]["diff_ci"] is None


def test_explanation_measures_per_method(report_dir: Path) -> None:
    expl = _strict_json(report_dir / "metrics.json")["explanations"]
    assert 1 <= expl["images"] <= 2
    assert list(expl["summary"]) == [*METHODS, *BASELINES]
    for method, summary in expl["summary"].items():
        rhos = [
            r["randomization_rho"]
            for r in expl["per_case"]
            if r["method"] == method and r["randomization_rho"] is not None
        ]
        if rhos:
            assert summary["randomization_passed"] == (float(np.median(rhos)) < 0.5)
        else:
            assert summary["randomization_passed"] is None
    assert len(expl["per_case"]) == expl["images"] * (len(METHODS) + len(BASELINES))
    for row in expl["per_case"]:
        assert row["target"] == ("malignant" if row["label"] == 1 else "benign")
        assert 0.0 <= row["energy"] <= 1.0 and 0.0 <= row["mask_share"] <= 1.0
        assert 0.0 <= row["deletion_auc"] <= 1.0 and 0.0 <= row["insertion_auc"] <= 1.0
        if row["method"] in BASELINES:
            assert row["randomization_rho"] is None
        elif row["randomization_rho"] is not None:
            assert -1.0 <= row["randomization_rho"] <= 1.0
            assert row["randomization_passed"] == (row["randomization_rho"] < 0.5)


def test_report_html_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    images = re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    # ROC, calibration, confusion, attributions, deletion/insertion, gallery tiles
    assert len(images) >= 6
    import base64

    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    for heading in ("Modality ablation", "TI-RADS grade", "descriptors contribute", "Gallery"):
        assert heading in html
    assert "layercam-fused" in html and "random map (chance)" in html
    assert "centre map (prior)" in html


def test_tirads_labels_carry_the_caveat() -> None:
    from thyrocam.report.build import ReportData
    from thyrocam.report.html import render_html

    data = _fake_report("tirads: DDTI labels are derived from the radiologist's TI-RADS grade")
    html = render_html(ReportData(**data), methods=())
    assert "Label caveat" in html and "burnt-in text" in html
    data = _fake_report("explicit labels (labels.csv or manifest)")
    assert "Label caveat" not in render_html(ReportData(**data), methods=())


def _fake_report(label_definition: str) -> dict:
    confusion = {"tp": 1, "fp": 0, "tn": 1, "fn": 0}
    model = {
        "n": 2,
        "n_malignant": 1,
        "n_benign": 1,
        "auc": 1.0,
        "threshold": 0.5,
        "sensitivity": 1.0,
        "specificity": 1.0,
        "accuracy": 1.0,
        "confusion": confusion,
        "auc_ci": None,
        "diff_ci": None,
        "modalities": "both",
        "run": "r",
    }
    metrics = {
        "run": "r",
        "data": "d",
        "subset": "all",
        "images": 2,
        "cases": 2,
        "label_definition": label_definition,
        "arch": "resnet18",
        "preprocessing": {"mode": "roi", "size": 64},
        "threshold": 0.5,
        "evaluation": model,
        "ablation": {"combined": model},
        "by_tirads_grade": [],
        "attributions": {
            "fields": ["age"],
            "mean_abs": [0.1],
            "mean_malignant": [0.1],
            "mean_benign": None,
            "present": [1.0],
            "mean_abs_effect": 0.1,
            "max_completeness_error": 0.0,
        },
        "explanations": {
            "images": 0,
            "summary": {},
            "pointing_tolerance_px": 15,
            "deletion_baseline": "blur",
            "steps": 16,
            "randomized": "head",
        },
    }
    curves = {
        "combined": {"fpr": [0, 0, 1], "tpr": [0, 1, 1]},
        "calibration": {"mean_predicted": [0.2, 0.8], "observed": [0.0, 1.0], "count": [1, 1]},
    }
    return {"metrics": metrics, "labels": np.array([0, 1]), "scores": {}, "curves": curves}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["image"], "--ablation: got 'image'; allowed: KIND=RUN"),
        (["both=/r"], "--ablation: got 'both=/r'; allowed: KIND=RUN with KIND one of image"),
        (["image="], "--ablation: got 'image='"),
        (["=/r"], "--ablation: got '=/r'"),
    ],
)
def test_parse_ablation_rejects(pairs: list[str], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        parse_ablation(pairs)


def test_parse_ablation_accepts() -> None:
    assert parse_ablation(["image=/a", "Clinical=/b"]) == {"image": "/a", "clinical": "/b"}
    assert parse_ablation(None) == {}


def test_ablation_run_of_the_wrong_modality_is_refused(
    tiny_roi_run: Path, tiny_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        InputError, match="ablation clinical: got a run trained with modalities 'both'"
    ):
        write_report(
            tiny_roi_run, synth_dir, out=tmp_path, device="cpu", ablation={"clinical": tiny_run}
        )


def test_ablation_run_with_another_split_is_refused(
    tiny_roi_run: Path, image_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(image_run, other)
    split = json.loads((other / "split.json").read_text())
    moved = split["test"].pop()
    split["train"].append(moved)
    (other / "split.json").write_text(json.dumps(split))
    with pytest.raises(InputError, match="ablation image: got .* whose test split differs"):
        write_report(tiny_roi_run, synth_dir, out=tmp_path / "r", ablation={"image": other})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ("gradcam", "scorecam")}, "method: got 'scorecam'"),
        ({"max_cases": 0}, "max_cases: got 0; allowed: an integer >= 1 or None"),
    ],
)
def test_bad_report_options(
    tiny_roi_run: Path, synth_dir: Path, tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        write_report(tiny_roi_run, synth_dir, out=tmp_path, **kwargs)


def test_bootstrap_resamples_cases() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    groups = ["a", "a", "b", "b", "c", "d"]
    perfect = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    reversed_ = 1.0 - perfect
    out = bootstrap_auc(labels, groups, {"good": perfect, "bad": reversed_}, reference="good")
    assert out["good"]["auc_ci"] == [1.0, 1.0]
    assert out["bad"]["auc_ci"] == [0.0, 0.0]
    assert out["bad"]["diff_ci"] == [1.0, 1.0] and out["good"]["diff_ci"] is None
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    noisy = y + rng.normal(0, 1.0, 200)
    ci = bootstrap_auc(y, [str(i) for i in range(200)], {"m": noisy}, n=300)["m"]["auc_ci"]
    from thyrocam.metrics import roc_auc

    assert ci[0] < roc_auc(noisy, y) < ci[1] and ci[1] - ci[0] < 0.25


def test_select_gallery() -> None:
    probs = np.array([0.99, 0.6, 0.02, 0.45, 0.9, 0.3])
    labels = np.array([1, 1, 0, 1, 0, 0])
    right, wrong = select_gallery(probs, labels, threshold=0.5, k=2)
    assert right == [0, 2]  # P 0.99 malignant, P 0.02 benign
    assert wrong == [4, 3]  # 0.9 called malignant on a benign; 0.45 called benign


def test_results_by_grade() -> None:
    def sample(case: str, grade: str | None, label: int) -> Sample:
        return Sample(case, Path(f"{case}.jpg"), (), {}, label, grade)

    samples = [sample("1", "3", 0), sample("1", "3", 0), sample("2", "4a", 1), sample("3", None, 1)]
    rows = results_by_grade(
        samples, np.array([0.2, 0.7, 0.9, 0.4]), np.array([0, 0, 1, 1]), threshold=0.5
    )
    assert [r["grade"] for r in rows] == ["3", "4a", "none"]
    assert rows[0]["cases"] == 1 and rows[0]["images"] == 2 and rows[0]["called_malignant"] == 0.5
    assert rows[0]["auc"] is None and rows[2]["accuracy"] == 0.0


def test_cli_evaluate_writes_the_report(
    tiny_roi_run: Path, image_run: Path, synth_dir: Path, tmp_path: Path, capsys
) -> None:
    from thyrocam.cli import main

    out = tmp_path / "rep"
    code = main(
        [
            "evaluate",
            str(tiny_roi_run),
            str(synth_dir),
            "--report",
            str(out),
            "--ablation",
            f"image={image_run}",
            "--methods",
            "gradcam",
            "--report-cases",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(out / "report.html")
    summary = _strict_json(out / "metrics.json")["explanations"]["summary"]
    assert list(summary) == ["gradcam", *BASELINES]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ablation", "image=/x"], "--ablation/--methods: given without --report"),
        (["--report", "R", "--ablation", "image"], "--ablation: got 'image'"),
        (["--report", "R", "--methods", "gradcam,nope"], "method: got 'nope'"),
    ],
)
def test_cli_report_errors_are_one_line(
    tiny_roi_run: Path, synth_dir: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    from thyrocam.cli import main

    extra = [str(tmp_path / e) if e == "R" else e for e in extra]
    code = main(["evaluate", str(tiny_roi_run), str(synth_dir), "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err
