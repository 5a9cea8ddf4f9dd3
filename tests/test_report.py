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


def test_explanation_settings_are_the_measures_defaults(report_dir: Path) -> None:
    from thyrocam.explain.measures import DELETION_STEPS, POINTING_TOLERANCE

    expl = _strict_json(report_dir / "metrics.json")["explanations"]
    assert expl["steps"] == DELETION_STEPS and expl["pointing_tolerance_px"] == POINTING_TOLERANCE
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert f"in\n{DELETION_STEPS} steps" in html and expl["randomized"] in html


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


def test_automatic_box_is_the_predictors_on_every_outlined_frame(
    report_dir: Path, tiny_roi_run: Path, synth_dir: Path
) -> None:
    """Each held-out outlined frame, given without a box, gets the box a prediction gets."""
    from thyrocam.evaluate import score_run
    from thyrocam.predictor import Predictor
    from thyrocam.predictor.autobox import autobox_ious, sample_outline_boxes

    boxes = _strict_json(report_dir / "metrics.json")["automatic_box"]
    predictor = Predictor.load(tiny_roi_run, device="cpu")
    outlined = [
        s for s in score_run(tiny_roi_run, synth_dir, device="cpu").samples
        if sample_outline_boxes(s)
    ]
    assert outlined and boxes["frames"] == len(outlined) == len(boxes["per_frame"])
    assert boxes["finder"] == "outline head"  # the tiny run has no locator
    for sample, row in zip(outlined, boxes["per_frame"], strict=True):
        prediction = predictor.predict(sample.image_path, sample.clinical)
        box = prediction.roi if prediction.roi_source == "auto" else None
        assert row["image"] == sample.image_path.name
        assert row["box"] == (None if box is None else [round(v, 1) for v in box])
        assert row["iou"] == round(autobox_ious(box, sample_outline_boxes(sample))[0], 4)
        assert row["dice"] is not None and 0.0 <= row["dice"] <= 1.0
    ious = np.array([r["iou"] for r in boxes["per_frame"]])
    assert boxes["hit_rate"] == pytest.approx(np.mean(ious >= 0.5))
    assert boxes["not_found"] == sum(r["box"] is None for r in boxes["per_frame"])
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert f"Each of the {boxes['frames']} held-out frames" in html


def test_automatic_box_is_not_measured_without_a_finder() -> None:
    from types import SimpleNamespace

    from thyrocam.report.boxes import measure_boxes

    unable = SimpleNamespace(locator=None, heads=("malignancy",))
    assert measure_boxes(unable, [], seed=0) is None  # type: ignore[arg-type]


def test_automatic_box_interval_and_dice() -> None:
    from thyrocam.report.boxes import BoxRow, _dice, _hit_interval

    truth = np.zeros((4, 4), dtype=bool)
    truth[:2] = True  # 8 pixels
    pred = np.zeros((4, 4), dtype=bool)
    pred[1:3] = True  # 8 pixels, 4 shared
    assert _dice(pred, truth) == pytest.approx(0.5)
    assert _dice(np.zeros_like(truth), np.zeros_like(truth)) == 1.0

    def row(case: str, iou: float) -> BoxRow:
        sample = Sample(case, Path(f"{case}.jpg"), (), {}, 0, None)
        return BoxRow(sample, None, (0, 0, 1, 1), iou, iou, None)

    rows = [row("a", 0.9), row("a", 0.8), row("b", 0.1), row("c", 0.6), row("d", 0.2)]
    lo, hi = _hit_interval(rows, seed=0)
    assert 0.0 <= lo < 0.6 < hi <= 1.0  # around the 3-of-5 hit rate
    assert _hit_interval(rows, seed=0) == [lo, hi]  # seeded
    assert _hit_interval(rows[:2], seed=0) is None  # one case: nothing to resample


def test_tirads_labels_carry_the_caveat() -> None:
    from thyrocam.report.html import render_html

    report = _fake_report("tirads: DDTI labels are derived from the radiologist's TI-RADS grade")
    html = render_html(report)
    assert "Label caveat" in html and "burnt-in text" in html
    report = _fake_report("explicit labels (labels.csv or manifest)")
    assert "Label caveat" not in render_html(report)


def _fake_report(label_definition: str, *, run: str = "r"):
    """A typed report of two images, no outline and no gallery (nothing needs a model)."""
    from thyrocam.evaluate import Scored
    from thyrocam.metrics import binary_metrics
    from thyrocam.report import AttributionSummary, Measures, Report, Scoring
    from thyrocam.report.scoring import Calibration, ModelScore

    samples = [
        Sample("1", Path("1_1.jpg"), (), {}, 0, "3"),
        Sample("2", Path("2_1.jpg"), (), {}, 1, None),
    ]
    probs, labels = np.array([0.2, 0.8]), np.array([0, 1])
    scored = Scored(
        run=Path(run),
        data=Path("d"),
        threshold=0.5,
        samples=samples,
        subset="all",
        probs=probs,
        labels=labels,
        label_definition=label_definition,
        problems=[],
    )
    model = ModelScore(
        name="combined",
        run=run,
        modalities="both",
        probabilities=probs,
        metrics=binary_metrics(probs, labels, threshold=0.5),
        auc_ci=None,
        diff_ci=None,
        fpr=[0, 0, 1],
        tpr=[0, 1, 1],
    )
    scoring = Scoring(
        scored=scored,
        models={"combined": model},
        by_grade=results_by_grade(samples, probs, labels, threshold=0.5),
        calibration=Calibration(mean_predicted=[0.2, 0.8], observed=[0.0, 1.0], count=[1, 1]),
    )
    attributions = AttributionSummary(
        fields=["age"],
        mean_abs=[0.1],
        mean_malignant=[0.1],
        mean_benign=None,
        present=[1.0],
        mean_abs_effect=0.1,
        max_completeness_error=0.0,
    )
    measures = Measures(methods=BASELINES, images=0, rows=[], summary={}, curves={})
    return Report(
        scoring=scoring,
        attributions=attributions,
        measures=measures,
        meta={"arch": "resnet18", "preprocessing": {"mode": "roi", "size": 64}},
    )


def test_html_comes_from_the_escaping_template() -> None:
    """Every section of templates/report.html is on the page; user text is escaped."""
    from importlib.resources import files

    from thyrocam.report.html import TEMPLATE, render_html

    template = (files("thyrocam.report") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    sections = re.findall(r'<h2 id="(\w+)">([^<]+)</h2>', template)
    assert [s for s, _ in sections] == [
        "performance",
        "ablation",
        "grades",
        "descriptors",
        "explanations",
        "boxes",
        "gallery",
    ]
    hostile = "<script>alert('x')</script>"
    report = _fake_report(f"tirads: {hostile}", run=f"/runs/{hostile}")
    html = render_html(report)
    for ident, heading in sections:
        assert f'<h2 id="{ident}">{heading}</h2>' in html
    assert "<script" not in html
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    assert html.count(escaped) == 3  # title, run, caveat
    assert "No held-out image has a nodule outline" in html
    assert "Not measured: the run has no outline head or locator" in html
    assert "No wrong call among the held-out images." in html


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


def test_cli_evaluate_report_scores_each_image_once(
    tiny_roi_run: Path, synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """One pass of the model over the held-out images; metrics.json and the report agree."""
    import thyrocam.evaluate
    from thyrocam.cli import main

    real = thyrocam.evaluate.predict_probs
    scored_images: list[int] = []

    def counting(model, loader, *, device):
        scored_images.append(len(loader.dataset))
        return real(model, loader, device=device)

    monkeypatch.setattr(thyrocam.evaluate, "predict_probs", counting)
    out = tmp_path / "rep"
    argv = ["evaluate", str(tiny_roi_run), str(synth_dir), "--device", "cpu"]
    report_options = ["--report", str(out), "--methods", "gradcam", "--report-cases", "1"]
    assert main([*argv, *report_options]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = _strict_json(out / "metrics.json")
    assert report["images"] > 0
    assert scored_images == [report["images"]]
    run_metrics = _strict_json(tiny_roi_run / "metrics.json")["evaluation"]
    for key in ("n", "auc", "sensitivity", "specificity", "accuracy", "confusion", "threshold"):
        assert run_metrics[key] == report["evaluation"][key] == printed[key], key
    for key in ("data", "subset", "label_definition", "data_problems"):
        assert run_metrics[key] == printed[key], key
    scored_images.clear()
    assert main(argv) == 0  # without --report: the same single pass
    assert scored_images == [report["images"]]


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
