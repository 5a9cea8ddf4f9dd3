"""Explanation measures: each one separates a good map from a bad one on a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from thyrocam.errors import InputError
from thyrocam.explain.measures import (
    cam_peak,
    centre_map,
    deletion_insertion,
    energy_in_mask,
    pointing_game,
    random_map,
    randomization_check,
    randomized_copy,
    spearman,
)
from thyrocam.model import ThyroidNet

H, W = 120, 200


def _disk(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def _blob(cx: float, cy: float, sigma: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


MASK = _disk(60, 60, 20)


@pytest.mark.parametrize(
    ("peak", "tolerance", "hit"),
    [
        ((60, 60), 15.0, True),  # centre of the nodule
        ((78, 60), 0.0, True),  # inside, near the edge
        ((150, 30), 15.0, False),  # far away
        ((90, 60), 15.0, True),  # 10 px outside the outline: within Zhang et al.'s 15 px
        ((90, 60), 5.0, False),
    ],
)
def test_pointing_game(peak: tuple[int, int], tolerance: float, hit: bool) -> None:
    cam = _blob(*peak)
    assert cam_peak(cam) == pytest.approx(peak)
    assert pointing_game(cam, MASK, tolerance=tolerance) is hit


def test_pointing_game_flat_map_and_empty_mask_are_misses() -> None:
    assert cam_peak(np.zeros((H, W))) is None
    assert pointing_game(np.zeros((H, W)), MASK) is False
    assert pointing_game(_blob(60, 60), np.zeros((H, W), bool)) is False


def test_tied_maxima_use_their_centroid() -> None:
    cam = np.zeros((H, W))
    cam[60, 10] = cam[60, 110] = 1.0  # both outside; their centroid (60, 60) is inside
    assert cam_peak(cam) == (60.0, 60.0)
    assert pointing_game(cam, MASK, tolerance=0)


def test_energy_in_mask() -> None:
    inside = energy_in_mask(_blob(60, 60), MASK)
    outside = energy_in_mask(_blob(160, 60), MASK)
    assert inside > 0.9 and outside < 0.01
    assert energy_in_mask(np.ones((H, W)), MASK) == pytest.approx(MASK.mean())
    assert energy_in_mask(np.zeros((H, W)), MASK) == 0.0


@pytest.mark.parametrize(
    "fn", [pointing_game, energy_in_mask], ids=["pointing_game", "energy_in_mask"]
)
@pytest.mark.parametrize(
    ("cam_shape", "mask_shape"), [((H, W), (W, H)), ((H, W, 1), (H, W)), ((H,), (H,))]
)
def test_shape_mismatch_is_an_input_error(fn, cam_shape: tuple, mask_shape: tuple) -> None:
    with pytest.raises(InputError, match=r"cam and mask: got shapes .*; allowed: the same"):
        fn(np.zeros(cam_shape), np.zeros(mask_shape, bool))


class _RegionTexture(nn.Module):
    """Logit = texture energy inside a square: the only evidence the model uses."""

    def __init__(self, region: tuple[slice, slice]) -> None:
        super().__init__()
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, 0, self.region[0], self.region[1]]
        return (8.0 * (patch**2).mean(dim=(1, 2)) - 4.0)[:, None]


def _toy() -> tuple[_RegionTexture, torch.Tensor, np.ndarray]:
    s = 48
    region = (slice(8, 24), slice(20, 40))
    x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    truth = np.zeros((s, s), dtype=np.float32)
    truth[region] = 1.0
    return _RegionTexture(region), x, truth


def test_deletion_and_insertion_rank_the_true_evidence_above_a_random_map() -> None:
    model, x, truth = _toy()
    good = deletion_insertion(model, x, truth, steps=16)
    rand = deletion_insertion(model, x, random_map(truth.shape, seed=1), steps=16)
    assert good.deletion_auc < rand.deletion_auc - 0.1
    assert good.insertion_auc > rand.insertion_auc + 0.1
    # Both curves run between the intact and the fully blurred input.
    p_full = float(torch.sigmoid(model(x))[0, 0])
    assert good.deletion[0] == pytest.approx(p_full) and good.insertion[-1] == pytest.approx(p_full)
    assert good.deletion[-1] == pytest.approx(good.insertion[0])
    assert good.fractions.tolist() == pytest.approx(np.linspace(0, 1, 17).tolist())
    assert good.deletion[-1] < 0.1 < 0.9 < p_full


def test_benign_target_mirrors_the_probability() -> None:
    model, x, truth = _toy()
    mal = deletion_insertion(model, x, truth, steps=4)
    ben = deletion_insertion(model, x, truth, steps=4, target="benign")
    np.testing.assert_allclose(ben.deletion, 1.0 - mal.deletion, atol=1e-12)


def test_descriptors_are_passed_to_the_model() -> None:
    torch.manual_seed(0)
    net = ThyroidNet(arch="resnet18", clinical_dim=28).eval()
    x = torch.randn(1, 3, 32, 32)
    clin = torch.rand(1, 28)
    res = deletion_insertion(net, x, random_map((32, 32)), clinical=clin, steps=2)
    with torch.no_grad():
        expected = float(torch.sigmoid(net(x, clin))[0, 0])
    assert res.deletion[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps: got 0; allowed: an integer >= 1"),
        ({"steps": 2.5}, "steps: got 2.5; allowed: an integer >= 1"),
        ({"target": "cancer"}, "target: got 'cancer'; allowed: malignant, benign"),
        (
            {"cam": np.zeros((47, 48))},
            r"cam: got shape \(47, 48\); allowed: the input's \(48, 48\)",
        ),
    ],
)
def test_deletion_insertion_bad_inputs(kwargs: dict, message: str) -> None:
    model, x, truth = _toy()
    cam = kwargs.pop("cam", truth)
    with pytest.raises(InputError, match=message):
        deletion_insertion(model, x, cam, **kwargs)


def test_randomized_copy_resets_the_top_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    net = ThyroidNet(arch="resnet18", clinical_dim=28).eval()
    with torch.no_grad():
        net.cnn.layer4[0].bn1.running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    clone = randomized_copy(net, seed=1)
    after = clone.state_dict()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # untouched
    assert not torch.equal(after["cnn.layer4.1.conv2.weight"], before["cnn.layer4.1.conv2.weight"])
    assert not torch.equal(after["head.1.weight"], before["head.1.weight"])
    assert torch.equal(after["cnn.layer4.0.bn1.running_mean"], torch.zeros(512))
    assert torch.equal(after["cnn.layer3.1.conv2.weight"], before["cnn.layer3.1.conv2.weight"])
    assert not clone.training
    again = randomized_copy(net, seed=1).state_dict()
    assert torch.equal(again["cnn.layer4.1.conv2.weight"], after["cnn.layer4.1.conv2.weight"])


@pytest.mark.parametrize("bad", ["layer4", "cnn.layer9", ""])
def test_randomized_copy_unknown_module(bad: str) -> None:
    net = ThyroidNet(arch="resnet18", clinical_dim=28)
    with pytest.raises(InputError, match=f"modules: got {bad!r}; allowed: sub-module names"):
        randomized_copy(net, modules=(bad,))


def test_spearman() -> None:
    a = random_map((20, 30), seed=0)
    assert spearman(a, a**3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    ties = np.array([0, 0, 0, 1, 2, 2, 5], float)
    other = np.array([1, 0, 2, 3, 5, 4, 6], float)
    # Pearson correlation of the average ranks, computed by hand.
    ra = np.array([2, 2, 2, 4, 5.5, 5.5, 7])
    rb = np.array([2, 1, 3, 4, 6, 5, 7])
    assert spearman(ties, other) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert np.isnan(spearman(np.zeros(5), np.arange(5.0)))
    with pytest.raises(InputError, match="maps: got"):
        spearman(np.zeros(5), np.zeros(6))


def test_randomization_check() -> None:
    cam = random_map((32, 32), seed=0)
    assert randomization_check(cam, cam) == (pytest.approx(1.0), False)
    rho, passed = randomization_check(cam, random_map((32, 32), seed=5))
    assert passed and rho < 0.5
    rho, passed = randomization_check(cam, np.zeros((32, 32)))
    assert np.isnan(rho) and passed  # the randomised model lost all evidence
    assert randomization_check(np.zeros((32, 32)), cam)[1] is False  # nothing to lose


def test_random_map_is_smooth_seeded_and_normalised() -> None:
    a, b = random_map((40, 60), seed=3), random_map((40, 60), seed=3)
    assert a.shape == (40, 60) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, random_map((40, 60), seed=4))
    assert a.min() == 0.0 and a.max() == pytest.approx(1.0)
    assert np.abs(np.diff(a, axis=1)).max() < 0.2  # no pixel noise


def test_centre_map_points_at_a_centred_nodule_only() -> None:
    prior = centre_map((H, W))
    assert prior.shape == (H, W) and prior.max() == pytest.approx(1.0) and prior.min() == 0.0
    assert cam_peak(prior) == pytest.approx(((W - 1) / 2, (H - 1) / 2))
    assert pointing_game(prior, _disk(W / 2, H / 2, 15))
    assert not pointing_game(prior, MASK)  # a nodule off-centre is missed
