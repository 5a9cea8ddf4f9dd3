"""DICOM input: colour spaces, bit depths, syntaxes, frames, ultrasound regions, bad files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicom_samples import (
    CANVAS,
    DELTA_CM,
    PANEL_1,
    PANEL_2,
    canvas_frames,
    to_bytes,
    ultrasound_dataset,
)
from thyrocam.errors import DicomError, DicomFrameError, ImageError, InputError
from thyrocam.imaging import Preprocessing, load_frame, load_image, looks_like_dicom

# The colour bars of pydicom's SC_rgb* files, row 5, 15, ... 95 at column 50.
BARS = [
    (255, 0, 0), (255, 128, 128), (0, 255, 0), (128, 255, 128), (0, 0, 255),
    (128, 128, 255), (0, 0, 0), (64, 64, 64), (192, 192, 192), (255, 255, 255),
]  # fmt: skip
REGION_1 = (PANEL_1[0], PANEL_1[1], PANEL_1[2] + 1, PANEL_1[3] + 1)  # exclusive ends


def _bars(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img).astype(int)
    return np.array([arr[r, 50] for r in range(5, 100, 10)])


def _testfile(name: str) -> str:
    return get_testdata_file(name)  # only files inside pydicom's wheel (no download)


# -- pydicom's bundled files ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm"],
    ids=["rle", "rle-2frame", "jpeg-lossless", "jpeg2000-lossless"],
)
def test_lossless_rgb_gives_the_exact_bars(name: str) -> None:
    assert np.array_equal(_bars(load_image(_testfile(name))), np.array(BARS))


def test_second_frame_of_a_multiframe_file() -> None:
    path = _testfile("SC_rgb_rle_2frame.dcm")
    first, second = load_frame(path, frame=0), load_frame(path, frame=1)
    assert (first.index, second.index, second.frames) == (0, 1, 2)
    # The second frame of this file is the first one inverted.
    assert np.array_equal(_bars(second.image), 255 - np.array(BARS))


@pytest.mark.parametrize(
    "name",
    ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm"],
    ids=["ybr-full-422", "jpeg-baseline-ybr-full", "jpeg-baseline-422"],
)
def test_ybr_and_lossy_jpeg_within_tolerance(name: str) -> None:
    diff = np.abs(_bars(load_image(_testfile(name))) - np.array(BARS))
    assert diff.max() <= 6  # YBR rounding and JPEG quantisation of flat bars


def test_sixteen_bit_rgb_is_scaled_to_eight() -> None:
    # 65535 -> 255, 32896 -> 128, 16448 -> 64, 49344 -> 192.
    assert np.array_equal(_bars(load_image(_testfile("SC_rgb_rle_16bit.dcm"))), np.array(BARS))


def _linear_window(raw: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.round(((raw - (center - 0.5)) / (width - 1) + 0.5).clip(0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_sixteen_bit_monochrome_in_every_lossless_syntax(name: str) -> None:
    ref = dcmread(_testfile("MR_small.dcm"))
    raw = ref.pixel_array.astype(np.float64) * float(ref.get("RescaleSlope", 1)) + float(
        ref.get("RescaleIntercept", 0)
    )
    expected = _linear_window(raw, float(ref.WindowCenter), float(ref.WindowWidth))
    got = np.asarray(load_image(_testfile(name)))
    assert got.shape == (64, 64, 3)
    assert np.array_equal(got[:, :, 0], expected)
    assert np.array_equal(got[:, :, 0], got[:, :, 2])


def test_monochrome1_is_inverted(tmp_path) -> None:
    ds = dcmread(_testfile("MR_small.dcm"))
    normal = np.asarray(load_image(to_bytes(ds)))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.asarray(load_image(to_bytes(ds)))
    assert np.array_equal(inverted, 255 - normal)


def test_big_endian_and_jpeg_small_odd_rgb() -> None:
    little = np.asarray(load_image(_testfile("SC_rgb_small_odd.dcm"))).astype(int)
    big = np.asarray(load_image(_testfile("SC_rgb_small_odd_big_endian.dcm"))).astype(int)
    jpeg = np.asarray(load_image(_testfile("SC_rgb_small_odd_jpeg.dcm"))).astype(int)
    assert np.array_equal(little, big)
    assert np.abs(jpeg - little).max() <= 12


def test_palette_color_ultrasound() -> None:
    path = _testfile("examples_palette.dcm")
    ds = dcmread(path)
    from pydicom.pixels import apply_color_lut

    expected = np.round(apply_color_lut(ds.pixel_array, ds) / 257.0).astype(np.uint8)  # 16-bit LUT
    got = load_frame(path)
    assert np.array_equal(np.asarray(got.image), expected)
    # Its tissue region reaches past the 800x350 frame (the export shrank it): clipped.
    assert got.region == (120.0, 60.0, 800.0, 350.0)
    assert got.spacing_mm == pytest.approx((0.26228787661969977, 0.26228787661969977))


def test_ybr_rct_jpeg2000_colours() -> None:
    arr = np.asarray(load_image(_testfile("GDCMJ2K_TextGBR.dcm"))).astype(int)
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)
    green = (arr[..., 1] > 200) & (arr[..., 0] < 60) & (arr[..., 2] < 60)
    blue = (arr[..., 2] > 200) & (arr[..., 0] < 60) & (arr[..., 1] < 60)
    # The words "red", "green", "blue" one above the other, each in its colour.
    assert red.sum() > 500 and green.sum() > 500 and blue.sum() > 500
    rows = [np.nonzero(m.any(axis=1))[0] for m in (red, green, blue)]
    assert rows[0].max() < rows[1].min() and rows[1].max() < rows[2].min()
    assert np.abs(arr[5, 5] - 128).max() <= 2  # grey background


def test_ybr_jpeg_cine_frames() -> None:
    path = _testfile("examples_ybr_color.dcm")
    first, last = load_frame(path, frame=0), load_frame(path, frame=29)
    assert last.frames == 30 and last.index == 29
    assert not np.array_equal(np.asarray(first.image), np.asarray(last.image))
    with pytest.raises(DicomFrameError) as err:
        load_frame(path, frame=30)
    assert err.value.field == "frame" and err.value.allowed == "0..29"


def test_recognised_by_content_not_name(tmp_path) -> None:
    data = Path(_testfile("SC_rgb_rle.dcm")).read_bytes()
    named = tmp_path / "photo.png"  # a DICOM file with an image's name
    named.write_bytes(data)
    assert np.array_equal(_bars(load_image(named)), np.array(BARS))
    assert np.array_equal(_bars(load_image(io.BytesIO(data))), np.array(BARS))
    png = tmp_path / "scan.dcm"  # and a PNG called .dcm
    Image.new("RGB", (8, 6), (1, 2, 3)).save(png, format="PNG")
    assert load_frame(png).dicom is None and load_image(png).size == (8, 6)
    for head in (b"\x89PNG\r\n\x1a\n" + bytes(200), b"\xff\xd8\xff\xe0" + bytes(200), b"GIF89a"):
        assert not looks_like_dicom(head)


# -- ultrasound written from real DDTI frames ----------------------------------------


@pytest.fixture(scope="module")
def us_frames(ddti_sample) -> list[np.ndarray]:
    paths = sorted(ddti_sample.glob("*_1.jpg"))[:3]
    return canvas_frames(paths)


@pytest.fixture(scope="module")
def us_files(us_frames, tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("us")
    jpeg_ds = ultrasound_dataset(us_frames)
    native_ds = ultrasound_dataset(us_frames, compression="none")
    files = {
        "jpeg": folder / "scan_a",  # no extension: recognised by content
        "native": folder / "scan_b",
        "bare": folder / "scan_c",
    }
    files["jpeg"].write_bytes(to_bytes(jpeg_ds))
    files["native"].write_bytes(to_bytes(native_ds))
    files["bare"].write_bytes(to_bytes(native_ds, preamble=False))
    return {"paths": files, "jpeg_ds": jpeg_ds}


def test_ultrasound_lossless_frames_are_exact(us_frames, us_files) -> None:
    for key in ("native", "bare"):
        for k, expected in enumerate(us_frames):
            got = load_frame(us_files["paths"][key], frame=k)
            assert np.array_equal(np.asarray(got.image), expected), (key, k)
            assert got.frames == 3 and got.index == k
    assert us_files["paths"]["bare"].read_bytes()[128:132] != b"DICM"


def test_ultrasound_jpeg_frames_within_jpeg_tolerance(us_frames, us_files) -> None:
    from pydicom.encaps import generate_frames

    ds = us_files["jpeg_ds"]
    jpegs = list(generate_frames(ds.PixelData, number_of_frames=3))
    for k, expected in enumerate(us_frames):
        got = np.asarray(load_frame(us_files["paths"]["jpeg"], frame=k).image).astype(int)
        # Against Pillow's decoding of the same JPEG bytes: decoders agree to 1-2 levels.
        pil = np.asarray(Image.open(io.BytesIO(jpegs[k])).convert("RGB")).astype(int)
        assert np.abs(got - pil).max() <= 2
        # Against the frame before compression: quality 95, 4:2:2.
        assert np.abs(got - expected.astype(int)).mean() < 2.0


def test_largest_tissue_region_and_spacing(us_files) -> None:
    got = load_frame(us_files["paths"]["jpeg"])
    # The whole-canvas non-tissue region is listed first and is larger: ignored.
    assert got.region == tuple(float(v) for v in REGION_1)
    assert got.spacing_mm == pytest.approx((DELTA_CM * 10, DELTA_CM * 10))
    assert got.image.size == CANVAS


def test_region_tie_goes_to_the_first(us_frames) -> None:
    same = (PANEL_2[0], PANEL_2[1], PANEL_2[0] + 199, PANEL_2[1] + 149)
    other = (PANEL_1[0], PANEL_1[1], PANEL_1[0] + 199, PANEL_1[1] + 149)
    ds = ultrasound_dataset(us_frames[:1], regions=[(same, 1), (other, 1)])
    assert load_frame(to_bytes(ds)).region == (588.0, 60.0, 788.0, 210.0)


def test_region_crop_predicts_like_the_same_crop_as_png(
    us_files, tiny_run, tiny_roi_run, tmp_path, load_predictors_once
) -> None:
    from thyrocam import Predictor

    path = us_files["paths"]["jpeg"]
    whole = load_frame(path, frame=1)
    x0, y0, x1, y1 = (int(v) for v in whole.region)
    png = tmp_path / "crop.png"
    whole.image.crop((x0, y0, x1, y1)).save(png)
    for run, roi in ((tiny_run, None), (tiny_roi_run, (250.0, 140.0, 380.0, 260.0))):
        p = Predictor.load(run)
        from_dicom = p.predict(path, {"composition": "solid"}, frame=1, roi=roi)
        local = None if roi is None else (roi[0] - x0, roi[1] - y0, roi[2] - x0, roi[3] - y0)
        from_png = p.predict(png, {"composition": "solid"}, roi=local)
        assert from_dicom.probability == pytest.approx(from_png.probability, abs=1e-6)
        d = from_dicom.to_dict()
        assert d["frame"] == 1 and d["spacing_mm"] == pytest.approx([0.075, 0.075])
        assert from_png.to_dict()["frame"] is None and from_png.spacing_mm is None
    # The box in mm: from the region's corner, 0.075 mm per pixel.
    assert d["roi_mm"] == pytest.approx([(250 - x0) * 0.075, (140 - y0) * 0.075,
                                          (380 - x0) * 0.075, (260 - y0) * 0.075])  # fmt: skip


def test_overlay_is_aligned_with_the_whole_frame(
    us_files, tiny_run, tmp_path, load_predictors_once
) -> None:
    from thyrocam import Predictor

    p = Predictor.load(tiny_run)
    path = us_files["paths"]["jpeg"]
    whole = load_frame(path, frame=2)
    x0, y0, x1, y1 = (int(v) for v in whole.region)
    png = tmp_path / "crop.png"
    whole.image.crop((x0, y0, x1, y1)).save(png)
    ex = p.explain(path, frame=2, alpha=0.5)
    ref = p.explain(png, alpha=0.5)
    assert ex.cam_frame.shape == (CANVAS[1], CANVAS[0])
    assert np.allclose(ex.cam_frame[y0:y1, x0:x1], ref.cam_frame, atol=1e-5)
    outside = np.ones(ex.cam_frame.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(ex.cam_frame[outside] == 0)
    overlay = np.asarray(ex.overlay).astype(int)
    frame = np.asarray(whole.image).astype(int)
    # Outside the region the overlay is the frame itself; inside, the crop's overlay.
    assert np.array_equal(overlay[outside], frame[outside])
    assert np.abs(overlay[y0:y1, x0:x1] - np.asarray(ref.overlay).astype(int)).max() <= 1
    assert ex.mapping.to_dict()["region"] == [x0, y0, x1, y1]


def test_preprocessing_call_takes_a_frame(us_files) -> None:
    pre = Preprocessing(mode="letterbox", size=64)
    x, mapping = pre(us_files["paths"]["native"], frame=2)
    assert tuple(x.shape) == (3, 64, 64) and mapping.region == tuple(map(float, REGION_1))


# -- bad DICOM ------------------------------------------------------------------------


def _bad(us_frames, kind: str) -> bytes:
    ds = ultrasound_dataset(us_frames[:2], compression="none")
    if kind == "truncated":
        return to_bytes(ds)[:-50_000]
    if kind == "truncated-header":
        return to_bytes(ds)[:400]
    if kind == "no-pixel-data":
        del ds.PixelData
    elif kind == "unsupported-syntax":
        ds = ultrasound_dataset(us_frames[:2])  # encapsulated, as a video syntax would be
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2
    elif kind == "zero-frames":
        ds.NumberOfFrames = 0
    elif kind == "region-outside":
        ds.SequenceOfUltrasoundRegions[1].RegionLocationMinX0 = 900
        ds.SequenceOfUltrasoundRegions[1].RegionLocationMaxX1 = 950
    return to_bytes(ds)


# kind, frame, error class, field, HTTP status
BAD_CASES = [
    ("truncated", 0, DicomError, "PixelData", 415),
    ("truncated-header", 0, DicomError, None, 415),
    ("no-pixel-data", 0, DicomError, "PixelData", 415),
    ("unsupported-syntax", 0, DicomError, "TransferSyntaxUID", 415),
    ("zero-frames", 0, DicomFrameError, "NumberOfFrames", 422),
    ("frame-out-of-range", 2, DicomFrameError, "frame", 422),
    ("negative-frame", -1, DicomFrameError, "frame", 422),
    ("region-outside", 0, DicomFrameError, "SequenceOfUltrasoundRegions", 422),
]


@pytest.mark.parametrize("kind,frame,error,field,status", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_dicom_errors(us_frames, kind, frame, error, field, status) -> None:
    data = _bad(us_frames, kind)
    with pytest.raises(error) as err:
        load_frame(data, frame=frame)
    assert isinstance(err.value, ValueError) and isinstance(err.value, InputError)
    if field is not None:
        assert err.value.field == field
    assert "allowed" in str(err.value) and err.value.http_status == status


def test_frame_of_an_ordinary_image(tmp_path) -> None:
    png = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(png)
    with pytest.raises(DicomFrameError) as err:
        load_frame(png, frame=1)
    assert err.value.field == "frame" and err.value.allowed == "0"
    with pytest.raises(ImageError):  # ImageError, not a crash, for DICOM's magic alone
        load_image(bytes(128) + b"DICM")


@pytest.mark.parametrize("kind,frame,error,field,status", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_dicom_cli_one_line_nothing_written(
    us_frames, tiny_run, tmp_path, capsys, kind, frame, error, field, status
) -> None:
    from thyrocam.cli import main

    src = tmp_path / "bad_input"
    src.write_bytes(_bad(us_frames, kind))
    out, dicom_out = tmp_path / "overlay.png", tmp_path / "dicom"
    argv = ["explain", str(tiny_run), str(src), "--out", str(out)]
    argv += ["--dicom-out", str(dicom_out), "--frame", str(frame)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured.err
    assert lines[0].startswith("thyrocam explain: error:") and "allowed" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_input"]  # nothing written


def test_bad_dicom_cli_subprocess_exit_status(us_frames, tiny_run, tmp_path) -> None:
    src = tmp_path / "bad_input"
    src.write_bytes(_bad(us_frames, "zero-frames"))
    cmd = [sys.executable, "-m", "thyrocam", "explain", str(tiny_run), str(src)]
    cmd += ["--out", str(tmp_path / "o.png"), "--dicom-out", str(tmp_path / "d")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "NumberOfFrames" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_input"]


def test_cli_predict_frame_json(us_files, tiny_run) -> None:
    path = us_files["paths"]["jpeg"]
    cmd = [sys.executable, "-m", "thyrocam", "predict", str(tiny_run), str(path), "--frame", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["frame"] == 2 and out["spacing_mm"] == pytest.approx([0.075, 0.075])
    assert out["region"] == [float(v) for v in REGION_1]
