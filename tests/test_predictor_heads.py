"""The heads in use: descriptor-level CAMs, explanation targets, the automatic nodule box,
image-estimated descriptors, and runs written before the heads existed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from test_explain_methods import _reference_classes  # ours -> pytorch-grad-cam's
from thyrocam.clinical import default_cat_maps
from thyrocam.errors import InputError, TargetError
from thyrocam.explain import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from thyrocam.explain.targets import HeadOutput, available_targets, parse_target
from thyrocam.model import DESCRIPTOR_FIELDS, ThyroidNet, default_target_layer

SIZE = 96
ALL_HEADS = ("malignancy", "outline", "descriptors")
CAT_MAPS = default_cat_maps()
CLASSES = {f: len(CAT_MAPS["fields"][f]) for f in DESCRIPTOR_FIELDS}


class _OneInput(nn.Module):
    """pytorch-grad-cam calls model(x): one head of forward_heads with the descriptors bound."""

    def __init__(self, model: ThyroidNet, clin: torch.Tensor | None, head: str) -> None:
        super().__init__()
        self.model, self.clin, self.head = model, clin, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_heads(x, self.clin)[self.head]


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def net(request: pytest.FixtureRequest) -> ThyroidNet:
    torch.manual_seed(2)
    return ThyroidNet(
        arch=request.param, clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES
    ).eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, SIZE, SIZE, generator=gen), torch.rand(1, 28, generator=gen)


# -- targets ------------------------------------------------------------------------------


def test_available_targets_follow_the_heads_and_the_encoding() -> None:
    assert available_targets(heads=("malignancy",), cat_maps=CAT_MAPS) == ("malignant", "benign")
    full = available_targets(heads=ALL_HEADS, cat_maps=CAT_MAPS)
    assert full[:2] == ("malignant", "benign")
    assert len(full) == 2 + sum(CLASSES.values())
    assert "calcifications:microcalcifications" in full and "sex:F" not in full


@pytest.mark.parametrize(
    ("text", "name", "head", "column"),
    [
        ("malignant", "malignant", "malignancy", 0),
        (" Benign ", "benign", "malignancy", 0),
        (
            "calcifications:microcalcifications",
            "calcifications:microcalcifications",
            "calcifications",
            2,
        ),
        # Any spelling the descriptor vocabulary accepts names the same column.
        (
            "Calcifications: microcalcification",
            "calcifications:microcalcifications",
            "calcifications",
            2,
        ),
        ("margins:ill- defined", "margins:ill defined", "margins", 2),
        ("composition:cystic", "composition:cystic", "composition", 0),
    ],
)
def test_parse_target(text: str, name: str, head: str, column: int) -> None:
    target = parse_target(text, heads=ALL_HEADS, cat_maps=CAT_MAPS)
    assert (target.name, target.head, target.column) == (name, head, column)
    assert CAT_MAPS["fields"].get(head, [None])[column] == target.value or head == "malignancy"


@pytest.mark.parametrize(
    ("text", "heads", "why"),
    [
        ("colour:red", ALL_HEADS, "'colour' is not a descriptor field"),
        ("sex:F", ALL_HEADS, "'sex' is not a descriptor field"),
        ("calcifications:big", ALL_HEADS, "'big' is not a value of calcifications"),
        ("margins:", ALL_HEADS, "'' is not a value of margins"),
        ("margins:u", ALL_HEADS, "'u' is not a value of margins"),
        ("calcifications:microcalcifications", ("malignancy",), "this run has no descriptor heads"),
        ("calcifications:microcalcifications", ("malignancy", "outline"), "no descriptor heads"),
    ],
)
def test_unknown_targets_raise_target_error(text: str, heads: tuple, why: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text, heads=heads, cat_maps=CAT_MAPS)
    err = info.value
    assert isinstance(err, ValueError) and err.field == "target" and err.value == text
    assert err.code == "unknown_target" and err.http_status == 422
    assert str(err).startswith(f"target: got {text!r} (") and why in str(err)
    assert err.allowed == available_targets(heads=heads, cat_maps=CAT_MAPS)
    assert "allowed: malignant, benign" in str(err)


@pytest.mark.parametrize("text", ["both", "", "outline", 3, None])
def test_text_that_is_no_target_is_a_plain_input_error(text: object) -> None:
    with pytest.raises(InputError) as info:
        parse_target(text, heads=ALL_HEADS, cat_maps=CAT_MAPS)
    assert not isinstance(info.value, TargetError)
    assert info.value.field == "target" and str(info.value).startswith("target: got")


# -- descriptor-head CAMs against pytorch-grad-cam ----------------------------------------


# Values whose map has positive evidence in these random networks (a column whose map is
# all zero would make the comparison trivial); one per field.
TARGETS = {
    "resnet18": [
        "composition:solid",
        "echogenicity:hypoechogenicity",
        "margins:ill defined",
        "calcifications:microcalcifications",
    ],
    "resnet50": [
        "composition:solid",
        "echogenicity:hypoechogenicity",
        "margins:ill defined",
        "calcifications:non",
    ],
}


# Every field with Grad-CAM; every method on one field (each pytorch-grad-cam call is
# a full backward pass, and resnet50 is slow on two shared cores).
CASES = [(GradCAM, i) for i in range(4)] + [
    (cls, 3) for cls in (GradCAMPlusPlus, HiResCAM, LayerCAM)
]


@pytest.mark.parametrize(
    ("cls", "field_index"), CASES, ids=[f"{c.__name__}-{DESCRIPTOR_FIELDS[i]}" for c, i in CASES]
)
def test_descriptor_cam_equals_pytorch_grad_cam(
    net: ThyroidNet, cls: type, field_index: int
) -> None:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    target = TARGETS[net.arch][field_index]
    parsed = parse_target(target, heads=net.heads, cat_maps=CAT_MAPS)
    layer = default_target_layer(net)
    x, clin = _inputs()
    net.zero_grad(set_to_none=True)
    proxy = HeadOutput(net, parsed.head)
    res = cls(proxy, layer).compute(x, clinical=clin, **parsed.engine_kwargs())
    assert all(p.grad is None for p in net.parameters())
    assert res.used_idx == [parsed.column] and res.logits.shape == (1, CLASSES[parsed.head])
    assert not proxy.training and not net.training  # the engine left the shared model in eval
    # The proxy kept every head of the pass the map was taken from.
    assert set(proxy.outputs) == {"malignancy", "outline", *DESCRIPTOR_FIELDS}
    torch.testing.assert_close(proxy.outputs[parsed.head], torch.from_numpy(res.logits))
    ref_cls = _reference_classes()[cls]
    with ref_cls(model=_OneInput(net, clin, parsed.head), target_layers=[layer]) as engine:
        ref = engine(input_tensor=x, targets=[ClassifierOutputTarget(parsed.column)])[0]
    assert not res.all_zero[0], "the comparison needs a map with structure"
    assert ref.max() > 0.99 and res.cam.max() == pytest.approx(1.0)
    assert np.abs(res.cam[0] - ref).max() < 1e-4


def test_descriptor_maps_differ_between_values(net: ThyroidNet) -> None:
    layer = default_target_layer(net)
    x, clin = _inputs()
    maps = []
    for value in ("solid", "spongiform"):
        parsed = parse_target(f"composition:{value}", heads=net.heads, cat_maps=CAT_MAPS)
        proxy = HeadOutput(net, parsed.head)
        maps.append(GradCAM(proxy, layer).compute(x, clinical=clin, **parsed.engine_kwargs()).cam)
    assert np.abs(maps[0] - maps[1]).max() > 1e-2


@pytest.mark.parametrize("target", ["malignant", "benign"])
def test_malignancy_cam_on_a_multi_head_model_equals_pytorch_grad_cam(
    net: ThyroidNet, target: str
) -> None:
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    layer = default_target_layer(net)
    x, clin = _inputs()
    parsed = parse_target(target, heads=net.heads, cat_maps=CAT_MAPS)
    through_proxy = GradCAM(HeadOutput(net, "malignancy"), layer).compute(
        x, clinical=clin, **parsed.engine_kwargs()
    )
    direct = GradCAM(net, layer).compute(x, clinical=clin, target=target)
    np.testing.assert_allclose(through_proxy.cam, direct.cam, atol=1e-6)
    with ReferenceGradCAM(
        model=_OneInput(net, clin, "malignancy"), target_layers=[layer]
    ) as engine:
        ref = engine(
            input_tensor=x, targets=[BinaryClassifierOutputTarget(int(target == "malignant"))]
        )[0]
    assert np.abs(direct.cam[0] - ref).max() < 1e-4


# -- the Predictor: automatic box, estimated descriptors, targets, old runs ---------------

FRAME_SIZE = (560, 360)
NODULE = (300, 120, 400, 200)  # the dark ellipse's box, in frame pixels (edges)
SPECK = (60, 60, 70, 70)  # a smaller dark patch: not the largest component
OUTLINE_INPUT = {"mode": "letterbox", "size": 128, "margin": 0.5}
# One input pixel of the 128 px nodule search is 560 / 128 = 4.4 frame pixels.
BOX_TOLERANCE = 560 / 128 + 1
# One pixel of the 64 px close-up crop, cut around the search box grown 1.5 times, is
# at most ~1.5 * 272 / 64 frame pixels.
CLOSE_UP_TOLERANCE = 1.5 * 272 / 64 + 1


class _DarkIsNodule(ThyroidNet):
    """A stand-in with a known answer: its outline head calls dark tissue nodule.

    The letterbox padding is black too, so a nodule search that looked outside the
    frame would find the padding instead of the nodule.
    """

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        grey = img.mean(dim=1, keepdim=True)  # ImageNet-normalised: 150/255 -> +0.6, 25 -> -1.6
        out["outline"] = (-1.0 - grey) * 20.0
        return out


def _frame(*, nodule: bool = True) -> Image.Image:
    img = Image.new("RGB", FRAME_SIZE, (150, 150, 150))
    if nodule:
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = NODULE
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=(25, 25, 25))  # PIL: inclusive corners
        draw.rectangle([SPECK[0], SPECK[1], SPECK[2] - 1, SPECK[3] - 1], fill=(25, 25, 25))
    return img


@pytest.fixture(scope="module")
def predictor():
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor import Predictor

    torch.manual_seed(3)
    net = _DarkIsNodule(
        arch="resnet18", clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES
    )
    return Predictor(
        model=net,
        cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="roi", size=64),
        meta={"outline_input": OUTLINE_INPUT, "heads": list(ALL_HEADS)},
        device="cpu",
    )


def test_automatic_box_is_the_largest_predicted_nodule(predictor) -> None:
    from thyrocam.imaging import Preprocessing

    frame = _frame()
    pred = predictor.predict(frame)
    assert pred.roi_source == "auto" and pred.warnings == []
    assert np.abs(np.subtract(pred.roi, NODULE)).max() <= BOX_TOLERANCE, pred.roi
    body = pred.to_dict()
    assert body["roi_source"] == "auto" and body["roi"] == list(pred.roi)

    exp = predictor.explain(frame)
    assert exp.prediction.roi == pred.roi and exp.prediction.roi_source == "auto"
    assert exp.prediction.probability == pytest.approx(pred.probability, abs=1e-6)
    # The box is used as a user's box would be: the run's ROI crop with its margin.
    expected = Preprocessing(mode="roi", size=64).source_box(FRAME_SIZE, roi=pred.roi)
    assert exp.mapping.box == expected
    mask = exp.mask_frame
    assert mask is not None and mask.shape == (360, 560) and mask.dtype == np.float32
    cx, cy = (NODULE[0] + NODULE[2]) // 2, (NODULE[1] + NODULE[3]) // 2
    assert mask[cy - 20 : cy + 20, cx - 30 : cx + 30].min() > 0.9
    assert mask[250:350, 100:250].max() < 0.1  # plain tissue
    assert mask[63:67, 63:67].min() > 0.5  # the speck is outlined, but it is not the box


def test_no_nodule_found_uses_the_whole_frame_with_one_warning(predictor) -> None:
    from thyrocam.predictor import NO_NODULE_WARNING

    pred = predictor.predict(_frame(nodule=False))
    assert pred.roi is None and pred.roi_source == "frame"
    # The ROI run's own fallback warning says the same thing: only one of them.
    assert pred.warnings == [NO_NODULE_WARNING]
    exp = predictor.explain(_frame(nodule=False))
    assert exp.prediction.roi_source == "frame" and exp.mask_frame.max() < 0.5


class _BlurredSearch(_DarkIsNodule):
    """Outlines dark tissue exactly in a crop, but 4 input pixels too wide on the whole
    frame (the 128 px search): only the close-up pass gets the box right."""

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        if img.shape[-1] == OUTLINE_INPUT["size"]:
            out["outline"] = torch.nn.functional.max_pool2d(out["outline"], 9, 1, padding=4)
        return out


def _search_and_crop(net_class: type) -> tuple[ThyroidNet, Any, Any]:
    """``(net, search, crop)``: a stand-in network, the 128 px search, a 64 px ROI crop."""
    from thyrocam.imaging import Preprocessing

    torch.manual_seed(3)
    net = net_class(arch="resnet18", clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES)
    return net.eval(), Preprocessing.from_dict(OUTLINE_INPUT), Preprocessing(mode="roi", size=64)


def test_the_automatic_box_is_outlined_again_in_the_runs_crop() -> None:
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor.autobox import find_nodule

    net, search, crop = _search_and_crop(_BlurredSearch)
    wide, _ = find_nodule(net, _frame(), clin=None, search=search, crop=Preprocessing(size=64))
    box, outline = find_nodule(net, _frame(), clin=None, search=search, crop=crop)
    # The search alone: 4 input pixels (17.5 frame pixels) too wide on every side.
    assert (
        np.subtract(NODULE[:2], wide[:2]).min() > 12
        and np.subtract(wide[2:], NODULE[2:]).min() > 12
    )
    # The close-up: within ~272 / 64 frame pixels (one crop pixel is a few of them).
    assert np.abs(np.subtract(box, NODULE)).max() <= 272 / 64 + 1, box
    assert outline.shape == (360, 560)


class _ShrunkSearch(_DarkIsNodule):
    """Outlines dark tissue exactly in a crop, but 5 input pixels short of its rim on the
    whole frame: the search box lies inside the nodule, as a confident core does."""

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        if img.shape[-1] == OUTLINE_INPUT["size"]:
            out["outline"] = -torch.nn.functional.max_pool2d(-out["outline"], 11, 1, padding=5)
        return out


def test_the_close_up_crop_has_room_for_the_rim_the_search_core_missed(monkeypatch) -> None:
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor import autobox

    net, search, crop = _search_and_crop(_ShrunkSearch)
    core, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=Preprocessing())
    assert np.subtract(core[:2], NODULE[:2]).min() > 12, core  # the search alone: too small
    assert np.subtract(NODULE[2:], core[2:]).min() > 12, core
    box, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=crop)
    assert np.abs(np.subtract(box, NODULE)).max() <= CLOSE_UP_TOLERANCE, box
    # Cut tight around the core (no context), the crop shows too little of the nodule.
    monkeypatch.setattr(autobox, "REFINE_CONTEXT", 1.0)
    tight, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=crop)
    assert np.abs(np.subtract(tight, NODULE)).max() > CLOSE_UP_TOLERANCE, tight


class _LeaksRight(_DarkIsNodule):
    """Outlines dark tissue and, on every input, 6 more pixels to its right: a mask
    that leaks to one side of the nodule, as a network may on one side of a lobe."""

    def forward_heads(self, img: torch.Tensor, clin: torch.Tensor | None = None) -> dict:
        out = super().forward_heads(img, clin)
        padded = nn.functional.pad(out["outline"], (6, 0, 0, 0), mode="replicate")
        out["outline"] = nn.functional.max_pool2d(padded, (1, 7), stride=1)
        return out


def _mirrored(box: tuple[float, float, float, float]) -> tuple[float, ...]:
    return (FRAME_SIZE[0] - box[2], box[1], FRAME_SIZE[0] - box[0], box[3])


def test_the_outline_is_averaged_with_its_mirror_image(monkeypatch) -> None:
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor import autobox

    net, search, crop = _search_and_crop(_LeaksRight)
    # The search alone: the leak is in one of the two views only (probability 0.5),
    # under the confident core's threshold, so the core is the nodule.
    core, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=Preprocessing())
    assert np.abs(np.subtract(core, NODULE)).max() <= BOX_TOLERANCE, core
    # Both passes: the box of the mirrored frame is the mirrored box.
    box, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=crop)
    flipped = _frame().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    box_m, _ = autobox.find_nodule(net, flipped, clin=None, search=search, crop=crop)
    assert np.abs(np.subtract(_mirrored(box_m), box)).max() <= CLOSE_UP_TOLERANCE, (box, box_m)
    # Without the average the leak widens the core, and the two boxes disagree.
    monkeypatch.setattr(autobox, "FLIP_AVERAGE", False)
    core, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=Preprocessing())
    assert core[2] - NODULE[2] > BOX_TOLERANCE, core
    box, _ = autobox.find_nodule(net, _frame(), clin=None, search=search, crop=crop)
    box_m, _ = autobox.find_nodule(net, flipped, clin=None, search=search, crop=crop)
    assert np.abs(np.subtract(_mirrored(box_m), box)).max() > CLOSE_UP_TOLERANCE, (box, box_m)


def test_the_frame_outline_of_a_mirrored_batch_is_the_mirrored_outline() -> None:
    from thyrocam.predictor.autobox import frame_outline

    net, _, _ = _search_and_crop(_LeaksRight)
    torch.manual_seed(0)
    img, clin = torch.randn(3, 3, 64, 96), torch.randn(3, 28)
    prob = frame_outline(net, img, clin)
    assert prob.shape == (3, 1, 64, 96)
    torch.testing.assert_close(frame_outline(net, img.flip(-1), clin), prob.flip(-1))
    one = torch.sigmoid(net.forward_heads(img, clin)["outline"])
    mirrored = torch.sigmoid(net.forward_heads(img.flip(-1), clin)["outline"]).flip(-1)
    torch.testing.assert_close(prob, (one + mirrored) / 2)
    assert not torch.allclose(prob, one, atol=0.1)  # the leak: the average is not the one view


def test_the_search_keeps_the_confident_core_so_a_faint_bridge_does_not_join_nodules() -> None:
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor.autobox import MASK_THRESHOLD, SEED_THRESHOLD, nodule_box_from_mask

    prob = np.zeros((100, 100), np.float32)
    prob[40:60, 10:40] = 0.99  # the nodule (larger)
    prob[45:55, 70:90] = 0.99  # the other panel's view, or tissue beside it
    prob[48:52, 40:70] = 0.7  # a faint bridge between them
    _, mapping = Preprocessing(mode="letterbox", size=100).apply(Image.new("RGB", (100, 100)))
    assert nodule_box_from_mask(prob, mapping, threshold=MASK_THRESHOLD) == (10, 40, 90, 60)
    assert nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD) == (10, 40, 40, 60)
    # near=: the component that overlaps a given box most, not the largest
    assert nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD, near=(75, 40, 95, 60)) == (
        70,
        45,
        90,
        55,
    )
    assert nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD, near=(0, 0, 5, 5)) is None


def test_a_panel_seam_stops_a_component_that_crosses_it() -> None:
    from thyrocam.imaging import Preprocessing
    from thyrocam.predictor.autobox import SEED_THRESHOLD, nodule_box_from_mask

    prob = np.zeros((100, 100), np.float32)
    prob[40:60, 20:50] = 0.99  # the nodule in the left view ...
    prob[42:58, 50:70] = 0.99  # ... touching the right view's across the seam at x = 50
    _, mapping = Preprocessing(mode="letterbox", size=100).apply(Image.new("RGB", (100, 100)))
    joined = nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD)
    assert joined == (20, 40, 70, 60)
    cut = nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD, seams=(50.0,))
    assert cut == (20, 40, 50, 60)  # the left part (larger); column 50 is the cut
    # A seam outside the input changes nothing.
    assert nodule_box_from_mask(prob, mapping, threshold=SEED_THRESHOLD, seams=(500.0,)) == joined


def test_panel_seam_lies_between_the_two_views_of_synthetic_frames(synth_dir: Path) -> None:
    from thyrocam.data import prepare_samples
    from thyrocam.imaging.geometry import outline_boxes
    from thyrocam.predictor.autobox import panel_seam

    samples, _, _ = prepare_samples(synth_dir, label_source="labels")
    kinds = {1: 0, 2: 0}
    for s in samples:
        boxes = sorted(outline_boxes(s.polygons))
        seam = panel_seam(Image.open(s.image_path).convert("RGB"))
        kinds[len(boxes)] += 1
        if len(boxes) == 2:  # the generator outlines the nodule once per panel
            assert seam is not None and boxes[0][2] <= seam <= boxes[1][0] + 1, (s, seam, boxes)
        else:  # one panel: no seam, or only an image edge that no outline crosses
            assert seam is None or not boxes[0][0] < seam < boxes[0][2], (s, seam, boxes)
    assert kinds[1] > 0 and kinds[2] > 0


@pytest.mark.parametrize(
    "name, seam",
    [
        ("184_1", 280),  # two views, a plain level step between them
        ("83_1", 280),  # two views of the same tissue: a faint step
        ("227_1", 280),
        ("35_1", None),  # one view
        ("32_1", None),
        ("371_2", None),
    ],
)
def test_panel_seam_on_real_ddti_frames(ddti_sample: Path, name: str, seam: int | None) -> None:
    from thyrocam.predictor.autobox import panel_seam

    assert panel_seam(Image.open(ddti_sample / f"{name}.jpg").convert("RGB")) == seam


def test_components_apart_keeps_whole_outlines_that_never_enter_the_region() -> None:
    from thyrocam.predictor.autobox import components_apart

    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:20] = True  # crosses into the region: dropped whole, not cut at its edge
    mask[25:35, 40:55] = True  # elsewhere: kept whole
    region = np.zeros_like(mask)
    region[0:20, 15:30] = True
    kept = components_apart(mask, region)
    assert kept[25:35, 40:55].all() and not kept[5:15, 5:20].any()
    assert kept.sum() == 150
    assert not components_apart(np.zeros_like(mask), region).any()


def test_a_given_box_is_used_as_given(predictor) -> None:
    pred = predictor.predict(_frame(), roi=(10, 10, 100, 100))
    assert pred.roi == (10, 10, 100, 100) and pred.roi_source == "user"


def test_estimated_descriptors_and_the_tirads_line_from_the_image(predictor) -> None:
    from thyrocam.clinical import acr_tirads

    frame = _frame()
    pred = predictor.predict(frame, {"composition": "solid", "age": 50}, roi=NODULE)
    x = predictor.prepare_image(frame, roi=NODULE)[1]
    clin = predictor.encode_clinical({"composition": "solid", "age": 50})[1]
    with torch.no_grad():
        heads = predictor.model.forward_heads(x, clin)
    assert set(pred.estimated) == set(DESCRIPTOR_FIELDS)
    for f in DESCRIPTOR_FIELDS:
        probs = torch.softmax(heads[f][0], dim=0)
        assert pred.estimated[f]["value"] == CAT_MAPS["fields"][f][int(probs.argmax())]
        assert pred.estimated[f]["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
    # Entered values stay; the missing three come from the image, labelled as such.
    assert pred.estimated_fields == ["echogenicity", "margins", "calcifications"]
    filled = {"composition": "solid"}
    filled.update({f: pred.estimated[f]["value"] for f in pred.estimated_fields})
    assert pred.tirads_estimated.level == acr_tirads(filled).level
    body = json.loads(json.dumps(pred.to_dict()))
    assert body["estimated"] == pred.estimated
    assert body["tirads_estimated"]["from_image"] == pred.estimated_fields
    complete = {f: CAT_MAPS["fields"][f][0] for f in DESCRIPTOR_FIELDS}
    whole = predictor.predict(frame, complete, roi=NODULE)
    assert whole.tirads_estimated is None and whole.to_dict()["tirads_estimated"] is None


def test_estimates_carry_held_out_accuracy_and_weak_heads_are_withheld(predictor) -> None:
    import copy

    from thyrocam.clinical import acr_tirads

    quality = {
        "split": "test",
        "fields": {
            "composition": {"accuracy": 0.8, "baseline": 0.6, "n": 30, "commonest": "solid"},
            "echogenicity": {"accuracy": 0.7, "baseline": 0.5, "n": 30, "commonest": "x"},
            # One frame above always answering the commonest value (16 of 30 vs 15):
            # not better beyond chance, so withheld.
            "margins": {"accuracy": 16 / 30, "baseline": 0.5, "n": 30, "commonest": "x"},
            # Never recorded in the test split: unknown, used as before.
            "calcifications": {"accuracy": None, "baseline": None, "n": 0, "commonest": None},
        },
    }
    judged = copy.copy(predictor)
    judged.meta = {**predictor.meta, "descriptor_quality": quality}
    pred = judged.predict(_frame(), {"composition": "solid"}, roi=NODULE)
    assert pred.estimated["echogenicity"]["held_out"] == {"accuracy": 0.7, "baseline": 0.5, "n": 30}
    # 21 of 30 where the commonest value gets 15: P(>= 21 of 30 at 0.5) = 0.021 < 0.05.
    assert pred.estimated["echogenicity"]["beats_baseline"] is True
    assert pred.estimated["margins"]["beats_baseline"] is False
    assert pred.estimated["calcifications"]["held_out"] is None
    assert pred.estimated["calcifications"]["beats_baseline"] is None
    assert pred.estimated_withheld == ["margins"]
    assert pred.estimated_fields == ["echogenicity", "calcifications"]
    filled = {"composition": "solid"}
    filled.update({f: pred.estimated[f]["value"] for f in pred.estimated_fields})
    assert pred.tirads_estimated.level == acr_tirads(filled).level
    body = json.loads(json.dumps(pred.to_dict()))
    assert body["estimated_withheld"] == ["margins"]
    assert body["tirads_estimated"]["from_image"] == ["echogenicity", "calcifications"]
    # Every missing field withheld: no line from the image at all.
    entered = {"composition": "solid", "echogenicity": "isoechogenicity", "calcifications": "non"}
    only = judged.predict(_frame(), entered, roi=NODULE)
    assert only.estimated_withheld == ["margins"] and only.tirads_estimated is None
    # A run that did not record it (every run before this): estimates as before.
    plain = predictor.predict(_frame(), {"composition": "solid"}, roi=NODULE)
    assert plain.estimated["margins"]["held_out"] is None and plain.estimated_withheld == []


def test_descriptor_target_through_the_predictor(predictor) -> None:
    frame = _frame()
    exp = predictor.explain(frame, roi=NODULE, target="Calcifications:microcalcification")
    assert exp.target == "calcifications:microcalcifications" and exp.used_idx == 2
    assert not predictor.model.training  # the proxy did not leave the shared model training
    x = predictor.prepare_image(frame, roi=NODULE)[1]
    clin = predictor.encode_clinical(None)[1]
    layer = default_target_layer(predictor.model)
    proxy = HeadOutput(predictor.model, "calcifications")
    expected = GradCAM(proxy, layer).compute(x, clinical=clin, class_idx=2).cam[0]
    np.testing.assert_allclose(exp.cam, expected, atol=1e-6)
    # The prediction comes from the same pass, and equals predict()'s.
    pred = predictor.predict(frame, roi=NODULE)
    assert exp.prediction.probability == pytest.approx(pred.probability, abs=1e-6)
    assert exp.prediction.estimated == pred.estimated
    assert "calcifications:microcalcifications" in predictor.targets


@pytest.mark.parametrize("bad", ["colour:red", "calcifications:big", "margins:"])
def test_unknown_targets_in_the_api(predictor, bad: str) -> None:
    with pytest.raises(TargetError) as info:
        predictor.explain(_frame(), roi=NODULE, target=bad)
    assert info.value.field == "target" and info.value.allowed == predictor.targets


def _old_run(tmp_path: Path) -> Path:
    """A run as written before the heads: no "heads", "descriptor_classes", "outline_input"."""
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    torch.manual_seed(5)
    net = ThyroidNet(arch="resnet18", clinical_dim=28)
    run = save_run(
        tmp_path / "old",
        model=net,
        cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="letterbox", size=64),
        threshold=0.5,
    )
    meta = json.loads((run / "meta.json").read_text())
    for key in ("heads", "descriptor_classes", "outline_input"):
        meta.pop(key, None)
    (run / "meta.json").write_text(json.dumps(meta))
    return run


def _heads_run(tmp_path: Path) -> Path:
    from thyrocam.checkpoint import save_run
    from thyrocam.imaging import Preprocessing

    torch.manual_seed(6)
    net = ThyroidNet(arch="resnet18", clinical_dim=28, heads=ALL_HEADS, descriptor_classes=CLASSES)
    return save_run(
        tmp_path / "heads",
        model=net,
        cat_maps=CAT_MAPS,
        preprocessing=Preprocessing(mode="letterbox", size=64),
        threshold=0.5,
        extra_meta={"outline_input": {"mode": "letterbox", "size": 64, "margin": 0.5}},
    )


def test_a_run_written_before_the_heads_loads_and_predicts(tmp_path: Path) -> None:
    from thyrocam.predictor import Predictor

    run = _old_run(tmp_path)
    assert "heads" not in json.loads((run / "meta.json").read_text())
    predictor = Predictor.load(run, device="cpu")
    assert predictor.heads == ("malignancy",) and predictor.targets == ("malignant", "benign")
    frame = _frame()
    pred = predictor.predict(frame, {"margins": "spiculated"})
    x = predictor.prepare_image(frame)[1]
    clin = predictor.encode_clinical({"margins": "spiculated"})[1]
    with torch.no_grad():
        logit = float(predictor.model(x, clin)[0, 0])
    assert pred.logit == pytest.approx(logit, abs=1e-6)
    assert pred.roi is None and pred.roi_source == "frame" and pred.warnings == []
    assert pred.estimated is None and pred.tirads_estimated is None
    exp = predictor.explain(frame, {"margins": "spiculated"}, target="benign")
    assert exp.mask_frame is None and exp.target == "benign"
    assert exp.prediction.logit == pytest.approx(logit, abs=1e-5)
    with pytest.raises(TargetError, match="this run has no descriptor heads"):
        predictor.explain(frame, target="margins:spiculated")


def test_a_run_with_heads_round_trips(tmp_path: Path) -> None:
    from thyrocam.predictor import Predictor

    predictor = Predictor.load(_heads_run(tmp_path), device="cpu")
    assert predictor.heads == ALL_HEADS
    assert predictor.outline_preprocessing.size == 64
    pred = predictor.predict(_frame())
    assert pred.roi_source in ("auto", "frame") and set(pred.estimated) == set(DESCRIPTOR_FIELDS)


# -- the CLI --------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    from thyrocam.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explains_a_descriptor_target_and_prints_the_box(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _heads_run(tmp_path)
    image = tmp_path / "frame.png"
    _frame().save(image)
    png = tmp_path / "overlay.png"
    code, out, err = _cli(
        capsys, "explain", str(run), str(image), "--out", str(png),
        "--target", "calcifications:microcalcifications", "--roi", "300,120,400,200",
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert body["target"] == "calcifications:microcalcifications" and body["used_class_idx"] == 2
    assert body["roi"] == [300.0, 120.0, 400.0, 200.0] and body["roi_source"] == "user"
    assert set(body["estimated"]) == set(DESCRIPTOR_FIELDS) and png.is_file()
    code, out, _ = _cli(capsys, "predict", str(run), str(image))
    body = json.loads(out)
    assert code == 0 and body["roi_source"] in ("auto", "frame") and "roi" in body


@pytest.mark.parametrize(
    ("which", "target", "needle"),
    [
        ("heads", "colour:red", "'colour' is not a descriptor field"),
        ("heads", "calcifications:big", "'big' is not a value of calcifications"),
        ("old", "calcifications:microcalcifications", "this run has no descriptor heads"),
        ("old", "both", "allowed: malignant, benign"),
    ],
)
def test_cli_bad_targets_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, which: str, target: str, needle: str
) -> None:
    run = _heads_run(tmp_path) if which == "heads" else _old_run(tmp_path)
    image = tmp_path / "frame.png"
    _frame().save(image)
    png = tmp_path / "overlay.png"
    code, out, err = _cli(
        capsys, "explain", str(run), str(image), "--out", str(png), "--target", target
    )
    assert code == 2 and out == "" and not png.exists()
    assert err.startswith(f"thyrocam explain: error: target: got {target!r}")
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
