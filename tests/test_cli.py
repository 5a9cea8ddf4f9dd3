"""End to end through the command line: synth -> train -> evaluate -> predict -> explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from thyrocam.cli import main


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, run = tmp_path / "synth", tmp_path / "run"
    code, out, _ = _run(capsys, "synth", str(data), "--cases", "16", "--seed", "3")
    assert code == 0 and (data / "labels.csv").is_file()

    code, out, _ = _run(
        capsys,
        "train",
        str(data),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--weights",
        "none",
        "--no-progress",
    )
    assert code == 0, out
    for name in ("model.safetensors", "meta.json", "cat_maps.json", "metrics.json"):
        assert (run / name).is_file()
    summary = json.loads(out)
    assert summary["best_epoch"] == 1

    code, out, _ = _run(capsys, "evaluate", str(run), str(data))
    assert code == 0
    result = json.loads(out)
    assert result["subset"] == "test split" and result["n"] >= 1
    for key in ("auc", "sensitivity", "specificity", "accuracy"):
        assert key in result
    assert json.loads((run / "metrics.json").read_text())["evaluation"]["n"] == result["n"]

    image = sorted(data.glob("*_1.jpg"))[0]
    code, out, _ = _run(
        capsys,
        "predict",
        str(run),
        str(image),
        "--clinical",
        "composition=solid",
        "age=59",
        "sex=u",
    )
    assert code == 0
    pred = json.loads(out)
    assert 0.0 <= pred["probability"] <= 1.0 and pred["label"] in ("benign", "malignant")
    assert pred["clinical"]["composition"] == "solid" and "sex" in pred["missing"]

    png = tmp_path / "overlay.png"
    code, out, _ = _run(
        capsys,
        "explain",
        str(run),
        str(image),
        "--out",
        str(png),
        "--alpha",
        "0.5",
        "--target",
        "benign",
    )
    assert code == 0
    with Image.open(png) as overlay, Image.open(image) as frame:
        assert overlay.format == "PNG" and overlay.size == frame.size and overlay.mode == "RGB"
    assert json.loads(out)["target"] == "benign"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["predict", "{run}", "{image}", "--clinical", "composition=sollid"], "composition"),
        (["predict", "{run}", "{image}", "--clinical", "age=300"], "age"),
        (["predict", "{run}", "{image}", "--clinical", "colour=red"], "--clinical"),
        (["predict", "{run}", "{missing}"], "not found"),
        (["predict", "{tmp}", "{image}"], "run"),
        (["explain", "{run}", "{image}", "--out", "{tmp}/nofolder/o.png"], "--out"),
        (["explain", "{run}", "{image}", "--out", "{tmp}/o.png", "--alpha", "2"], "alpha"),
        (["explain", "{run}", "{image}", "--out", "{tmp}/o.png", "--method", "magic"], "method"),
        (["predict", "{run}", "{image}", "--roi", "1,2,3"], "roi"),
        (["train", "{tmp}", "--out", "{tmp}/r"], "DDTI folder"),
        (["synth", "{tmp}/s", "--cases", "0"], "cases"),
        (["train", "{tmp}", "--out", "{tmp}/r", "--outline-box-weight", "-1"], "box-weight"),
        (["cv", "{tmp}", "--out", "{tmp}/r", "--outline-box-weight", "x"], "box-weight"),
    ],
)
def test_user_mistakes_give_one_line_and_nonzero_exit(
    tiny_run: Path,
    synth_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    argv: list[str],
    needle: str,
) -> None:
    image = sorted(synth_dir.glob("*_1.jpg"))[0]
    fmt = {
        "run": str(tiny_run),
        "image": str(image),
        "tmp": str(tmp_path),
        "missing": str(tmp_path / "none.jpg"),
    }
    code, out, err = _run(capsys, *[a.format(**fmt) for a in argv])
    assert code != 0
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.png").exists()
