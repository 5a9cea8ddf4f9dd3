"""Stacked fusion: the descriptor regression plus a cross-fitted weight on the image logit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from disc_manifest import disc_manifest
from thyrocam.checkpoint import load_run
from thyrocam.cli import main
from thyrocam.clinical import (
    FIELDS,
    default_cat_maps,
    encode_clinical_with_mask,
    feature_slices,
    mask_slice,
)
from thyrocam.cv import cross_validate
from thyrocam.errors import InputError
from thyrocam.explain import GradCAM
from thyrocam.explain.attribution import descriptor_attributions
from thyrocam.model import ThyroidNet, default_target_layer, descriptor_classes_from
from thyrocam.train import TrainConfig
from thyrocam.train.stacking import IMAGE_TEST_LEVEL, fit_logistic, image_test, stacked_fusion

CAT_MAPS = default_cat_maps()
PAYLOAD = {
    "composition": "solid",
    "echogenicity": None,
    "margins": "ill defined",
    "calcifications": "microcalcifications",
    "sex": "F",
    "age": 61,
}


def _image_net(seed: int = 0, decoder: str = "fpn") -> ThyroidNet:
    torch.manual_seed(seed)
    return ThyroidNet(
        arch="resnet10n",
        clinical_dim=28,
        modalities="image",
        heads=("malignancy", "outline", "descriptors"),
        descriptor_classes=descriptor_classes_from(CAT_MAPS),
        pool="outline",
        decoder=decoder,
    ).eval()


@pytest.mark.parametrize("decoder", ["fpn", "unet"])
def test_stacked_fusion_is_the_weighed_image_logit_plus_the_regression(decoder: str) -> None:
    image = _image_net(decoder=decoder)
    w = torch.randn(28, generator=torch.Generator().manual_seed(1))
    fused = stacked_fusion(image, clinical_weight=w, bias=0.3, image_weight=0.4)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    vec, _ = encode_clinical_with_mask(PAYLOAD, CAT_MAPS)
    clin = torch.from_numpy(vec)[None].repeat(3, 1) * torch.tensor([[1.0], [0.0], [1.0]])
    with torch.no_grad():
        expected = 0.4 * image(x)[:, 0] + clin @ w + 0.3
        assert torch.allclose(fused(x, clin)[:, 0], expected, atol=1e-5)
        # every other head is the image network's, unchanged
        mine, theirs = fused.forward_heads(x, clin), image.forward_heads(x)
        for name in ("outline", "composition", "calcifications"):
            assert torch.equal(mine[name], theirs[name])
    assert fused.modalities == "both" and image.modalities == "image"
    assert fused.decoder == image.decoder == decoder
    # The descriptors enter linearly, so each field's Shapley value is exactly its own
    # terms of the regression: its one-hot entries and its mask entry times the weights.
    att = descriptor_attributions(fused, x[:1], clin[:1], cat_maps=CAT_MAPS)
    slices, start = feature_slices(CAT_MAPS), mask_slice(CAT_MAPS).start
    for i, field in enumerate(FIELDS):
        terms = clin[0, slices[field]] @ w[slices[field]] + clin[0, start + i] * w[start + i]
        assert att.shapley[0, i] == pytest.approx(float(terms), abs=1e-5)
    assert att.shapley[0, FIELDS.index("echogenicity")] == 0.0  # missing
    # Grad-CAM of the fused logit is the image network's map: a positive weight scales
    # the gradients and activations' product, and the map is normalised.
    with (
        GradCAM(image, default_target_layer(image)) as a,
        GradCAM(fused, default_target_layer(fused)) as b,
    ):
        cam_image, _ = a(x[:1])
        cam_fused, _ = b(x[:1], clinical=clin[:1])
    assert cam_image.max() > 0
    np.testing.assert_allclose(cam_fused, cam_image, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_weight": -0.1}, "image_weight"),
        ({"image_weight": float("nan")}, "image_weight"),
        ({"image_weight": 0.1, "clinical_weight": torch.zeros(5)}, "image_model"),
    ],
)
def test_stacked_fusion_refuses_bad_weights(kwargs: dict, field: str) -> None:
    args = {"clinical_weight": torch.zeros(28), "bias": 0.0, **kwargs}
    with pytest.raises(InputError) as err:
        stacked_fusion(_image_net(), **args)
    assert err.value.field == field and isinstance(err.value, ValueError)
    both = ThyroidNet(arch="resnet10n", clinical_dim=28)
    with pytest.raises(InputError, match="'image'"):
        stacked_fusion(both, clinical_weight=torch.zeros(28), bias=0.0, image_weight=0.1)


def test_logistic_regression_with_an_offset_fits_only_what_the_offset_leaves() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    logit = 2.0 * x[:, 0] - 1.0
    y = (rng.random(400) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    free, b_free = fit_logistic(x, y, l2=0.0)
    assert free[0] > 1.0 and abs(free[1]) < 0.4
    # given the fitted weights' part as a fixed offset, nothing is left for a feature
    # to explain, and the bias is the one fitted with them
    w, b = fit_logistic(x[:, :1], y, l2=0.0, offset=x @ free)
    assert abs(w[0]) < 1e-4 and b == pytest.approx(b_free, abs=1e-4)
    # no features: the bias alone, matching the class balance of the weighted loss
    none, b = fit_logistic(np.zeros((400, 0)), y)
    assert none.shape == (0,) and abs(b) < 1e-6


def _clustered_sets(rng: np.random.Generator, *, cases: int, views: int, signal: float):
    """Frames of ``cases`` cases, ``views`` each: the descriptor offset sets the label,
    and the image logit is a per-case value (plus a little per-view noise) that adds
    ``signal`` times the label's residual."""
    offset = rng.normal(scale=1.5, size=cases)
    y = (rng.random(cases) < 1 / (1 + np.exp(-offset))).astype(np.float64)
    z = rng.normal(size=cases) + signal * (y - 1 / (1 + np.exp(-offset)))
    case = np.repeat(np.arange(cases), views)
    frame_z = z[case] + 0.1 * rng.normal(size=case.size)
    return frame_z, y[case], offset[case], case


def test_the_image_test_counts_cases_not_frames() -> None:
    rng = np.random.default_rng(3)
    z, y, offset, case = _clustered_sets(rng, cases=150, views=1, signal=1.0)
    once = image_test(z, y, offset=offset, groups=case)
    assert 0 < once < 0.05  # the image adds to the offset, and the test sees it
    # every case three times: the same evidence, so the same p-value by case ...
    thrice = image_test(np.repeat(z, 3), np.repeat(y, 3), offset=np.repeat(offset, 3),
                        groups=np.repeat(case, 3))  # fmt: skip
    assert thrice == pytest.approx(once, rel=1e-3)
    # ... where counting frames would find it far stronger than it is
    assert image_test(np.repeat(z, 3), np.repeat(y, 3), offset=np.repeat(offset, 3)) < once / 10
    # an image pointing the wrong way never enters
    assert image_test(-z, y, offset=offset, groups=case) == 1.0


def test_the_image_test_admits_noise_at_its_level_when_cases_have_several_frames() -> None:
    rng = np.random.default_rng(4)
    admitted = {"by case": 0, "by frame": 0}
    trials = 300
    for _ in range(trials):
        z, y, offset, case = _clustered_sets(rng, cases=60, views=3, signal=0.0)
        admitted["by case"] += image_test(z, y, offset=offset, groups=case) < IMAGE_TEST_LEVEL
        admitted["by frame"] += image_test(z, y, offset=offset) < IMAGE_TEST_LEVEL
    # the test admits a one-sided 2.5 % of pure noise; counted by frame, three views of a
    # case triple the statistic and noise enters several times as often
    assert admitted["by case"] / trials < 0.06
    assert admitted["by frame"] / trials > 0.10


def test_the_image_test_asks_what_the_image_adds_beyond_the_descriptors_scale() -> None:
    # A penalised descriptor regression's logit is shrunk (here to half the true one);
    # an image logit that only echoes the descriptors' risk carries nothing beyond them
    # and must not enter, however well it would restore the missing scale.
    rng = np.random.default_rng(6)
    admitted, trials = 0, 100
    for _ in range(trials):
        risk = rng.normal(scale=2.0, size=150)
        y = (rng.random(150) < 1 / (1 + np.exp(-risk))).astype(np.float64)
        echo = risk + rng.normal(scale=0.5, size=150)
        admitted += image_test(echo, y, offset=0.5 * risk) < IMAGE_TEST_LEVEL
    assert admitted / trials < 0.10  # a test that held the offset's scale at 1: ~all
    # an image that sees what the descriptors do not still enters
    hidden = rng.normal(size=150)
    risk = rng.normal(scale=2.0, size=150)
    y = (rng.random(150) < 1 / (1 + np.exp(-(risk + 1.5 * hidden)))).astype(np.float64)
    assert image_test(hidden, y, offset=0.5 * risk) < 0.01


@pytest.mark.parametrize("dark_is_malignant", [True, False])
def test_stacked_training_weighs_the_image_by_what_it_adds_on_unseen_cases(
    tmp_path: Path, dark_is_malignant: bool
) -> None:
    manifest = disc_manifest(tmp_path, dark_is_malignant=dark_is_malignant)
    out = tmp_path / "run"
    code = main(
        [
            "train", str(manifest), "--out", str(out), "--fusion", "stacked",
            "--arch", "resnet10n", "--image-size", "64", "--epochs", "4", "--batch-size", "8",
            "--heads", "malignancy", "--weights", "none", "--device", "cpu", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    fusion = meta["stacking"]
    assert fusion == metrics["stacking"] and meta["fusion"] == "stacked"
    assert meta["modalities"] == "both" and meta["train_config"]["fusion"] == "stacked"
    # the image network is kept at its last epoch (as cross-validation scores it)
    assert metrics["kept_epoch"] == metrics["epochs_run"] == 4
    run = load_run(out)
    frames = [torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    with torch.no_grad():
        logits = [float(run.model(f, None)[0, 0]) for f in frames]
    if dark_is_malignant:
        # the half networks read the disc's level on the frames they did not train on
        assert fusion["out_of_fold_auc"] > 0.8 and fusion["image_weight"] > 0
        assert metrics["test"]["auc"] > 0.8
        assert logits[0] != logits[1]
    else:
        # the manifest has no descriptors and the pixels say nothing: the regression's
        # constant alone, whatever the image
        assert fusion["image_weight"] == 0.0 and fusion["image_weight_fitted"] == 0.0
        assert logits[0] == logits[1]


def test_cv_builds_the_stacked_model_on_the_folds_image_network(tmp_path: Path) -> None:
    manifest = disc_manifest(tmp_path, dark_is_malignant=True)
    config = TrainConfig(
        epochs=3, image_size=64, batch_size=8, arch="resnet10n", preprocess="letterbox",
        device="cpu", weights=None, progress=False, heads=("malignancy",), fusion="stacked",
    )  # fmt: skip
    result = cross_validate(
        manifest, out=tmp_path / "cv", folds=2, config=config,
        models=("both", "image", "descriptor_lr"), cam_cases=0,
    )  # fmt: skip
    both, image = result["models"]["both"], result["models"]["image"]
    assert len(both["stacking_image_weight"]) == 2
    for k in range(2):
        # No descriptors in the manifest: the regression is a constant, so the fused
        # model ranks the test frames as the image network does, or not at all.
        weight = both["stacking_image_weight"][k]
        assert both["auc"][k] == (image["auc"][k] if weight > 0 else 0.5)
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["config"]["fusion"] == "stacked"


def _stacked_run(folder: Path, *, image_weight: float) -> tuple[Path, ThyroidNet]:
    """A run whose fused model weighs a (random) image network by ``image_weight``."""
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    image = _image_net(seed=3)  # its malignant map of the test crop is not empty
    w = torch.linspace(-1.0, 1.0, 28)
    fused = stacked_fusion(image, clinical_weight=w, bias=-0.2, image_weight=image_weight)
    save_run(
        folder, model=fused, cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="letterbox", size=64), threshold=0.5,
        extra_meta={"stacking": {"image_weight": image_weight}},
    )  # fmt: skip
    return folder, image


@pytest.mark.parametrize("image_weight", [0.0, 0.7])
def test_a_stacked_run_explains_its_image_network_and_says_its_weight(
    tmp_path: Path, synth_dir: Path, image_weight: float, capsys: pytest.CaptureFixture
) -> None:
    from thyrocam.predictor import Predictor
    from thyrocam.web.payload import explanation_body

    run, image = _stacked_run(tmp_path / "run", image_weight=image_weight)
    loaded = load_run(run)
    assert loaded.model.fusion == "stacked" and loaded.meta["fusion"] == "stacked"
    predictor = Predictor.load(run, device="cpu")
    frame = sorted(synth_dir.glob("*_1.jpg"))[0]
    exp = predictor.explain(frame, PAYLOAD, roi=(200, 100, 330, 230))
    pred = predictor.predict(frame, PAYLOAD, roi=(200, 100, 330, 230))
    assert exp.prediction.probability == pytest.approx(pred.probability, abs=1e-6)
    assert exp.image_weight == image_weight
    # The map is the image network's, whatever its weight in the fused logit.
    _, inp, _, _ = predictor.prepare_image(frame, roi=(200, 100, 330, 230))
    with GradCAM(image, default_target_layer(image)) as engine:
        expected, _ = engine(inp)
    assert expected.max() > 0
    np.testing.assert_allclose(exp.cam, expected, atol=1e-4)
    with torch.no_grad():  # the image output is the image network's logit
        heads = loaded.model.forward_heads(inp)
        assert torch.allclose(heads["image"], image(inp), atol=1e-5)
    with GradCAM(loaded.model, default_target_layer(loaded.model)) as engine:
        fused_cam, _ = engine(inp, clinical=torch.zeros(1, 28))
    # the fused logit's own map: the same map with weight, empty without
    assert (fused_cam.max() == 0) == (image_weight == 0)
    body = explanation_body(exp, filename=None)
    assert body["image_weight"] == image_weight
    # the image network's own probability: which way the page says the image pushed
    with torch.no_grad():
        own = float(torch.sigmoid(image(inp))[0, 0])
    assert body["image_probability"] == pytest.approx(own, abs=1e-6)
    out = tmp_path / "overlay.png"
    assert main(["explain", str(run), str(frame), "--out", str(out), "--roi", "200,100,330,230",
                 "--device", "cpu"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["image_weight"] == image_weight and printed["cam_all_zero"] is False
    assert "image_weight" not in explanation_body(
        Predictor.load(_joint_run(tmp_path / "joint"), device="cpu").explain(frame), filename=None
    )


@pytest.mark.parametrize("image_weight", [0.0, 0.7])
def test_the_report_scores_a_stacked_runs_maps_on_its_image_network(image_weight: float) -> None:
    from thyrocam.explain.measures import deletion_insertion
    from thyrocam.report.explanations import explained_score

    image = _image_net(seed=3)
    fused = stacked_fusion(
        image, clinical_weight=torch.linspace(-1.0, 1.0, 28), bias=-0.2, image_weight=image_weight
    )
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    clin = torch.zeros(1, 28)
    scored = explained_score(fused)
    with torch.no_grad():
        torch.testing.assert_close(scored(x, clin), image(x))
    cam = np.zeros((64, 64), np.float32)
    cam[16:48, 16:48] = 1.0
    curves = deletion_insertion(scored, x, cam, clinical=clin)
    assert np.ptp(curves.deletion) > 1e-4  # the image network's score moves with the pixels
    flat = deletion_insertion(fused, x, cam, clinical=clin)
    assert (np.ptp(flat.deletion) < 1e-6) == (image_weight == 0)  # the fused one: not at 0
    joint = _image_net()
    assert explained_score(joint) is joint


def _joint_run(folder: Path) -> Path:
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    torch.manual_seed(0)
    model = ThyroidNet(arch="resnet10n", clinical_dim=28).eval()
    save_run(
        folder, model=model, cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="letterbox", size=64), threshold=0.5,
    )  # fmt: skip
    return folder
