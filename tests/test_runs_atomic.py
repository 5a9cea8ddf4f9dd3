"""Run folders appear whole or not at all; damaged runs say which file and what is wrong.

Kills are real SIGKILLs: of a forked writer at every step of ``save_run``
(deterministic), and of ``thyrocam train`` subprocesses at several moments
(including the moment the temporary folder appears).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import thyrocam.checkpoint as ckpt
from thyrocam.checkpoint import load_run, save_run
from thyrocam.clinical import default_cat_maps
from thyrocam.errors import CheckpointError
from thyrocam.imaging import Preprocessing
from thyrocam.model import ThyroidNet

KILL_DEADLINE_S = 240  # one subprocess training: far above its few seconds


_MODELS: dict[int, ThyroidNet] = {}


def _model(seed: int = 0) -> ThyroidNet:
    if seed not in _MODELS:
        torch.manual_seed(seed)
        _MODELS[seed] = ThyroidNet(arch="resnet18", clinical_dim=28).eval()
    return _MODELS[seed]


def _save(out: Path, *, seed: int = 0, threshold: float = 0.4) -> Path:
    return save_run(
        out,
        model=_model(seed),
        cat_maps=default_cat_maps(),
        preprocessing=Preprocessing(mode="letterbox", size=64),
        threshold=threshold,
        metrics={"seed": seed},
        split={"train": ["1"], "val": ["2"], "test": ["3"]},
        problems=["a problem"],
    )


def _assert_absent_or_complete(run: Path, image: Path | None = None) -> str:
    """``"absent"`` or ``"complete"`` (then it loads, and predicts when given an image)."""
    if not run.exists():
        return "absent"
    assert sorted(p.name for p in run.iterdir()) == sorted(ckpt.RUN_FILES)
    if image is not None:
        from thyrocam.predictor import Predictor

        prediction = Predictor.load(run, device="cpu").predict(image)
        assert 0.0 <= prediction.probability <= 1.0
        return "complete"
    info = load_run(run)
    # the old run (seed 0, threshold 0.1) or the new one (seed 1, 0.2), never a mixture
    seed = json.loads((run / "metrics.json").read_text())["seed"]
    assert (seed, info.threshold) in ((0, pytest.approx(0.1)), (1, pytest.approx(0.2)))
    torch.testing.assert_close(info.model.cnn.conv1.weight, _model(seed).cnn.conv1.weight)
    return "complete"


# -- save_run killed at every step (fork + SIGKILL, deterministic) ------------------


def _kill_at_step(out: Path, step: int, *, seed: int) -> bool:
    """Fork; the child runs save_run and SIGKILLs itself before its ``step``-th file operation.

    Returns whether the child was killed (False: save_run finished first). The model
    is built before the fork: the child runs no torch kernels (no OpenMP after fork).
    """
    _model(seed)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            counter = {"n": 0}

            def tick(real):
                def wrapped(*args, **kwargs):
                    if counter["n"] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    counter["n"] += 1
                    return real(*args, **kwargs)

                return wrapped

            for name in ("save_file", "write_json", "save_cat_maps", "_fsync"):
                setattr(ckpt, name, tick(getattr(ckpt, name)))
            ckpt.os.rename = tick(os.rename)  # the child's own copy of the os module state
            ckpt.shutil.rmtree = tick(ckpt.shutil.rmtree)
            _save(out, seed=seed, threshold=0.1 * (seed + 1))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_save_run_killed_at_every_step_leaves_no_run_or_a_complete_one(
    tmp_path: Path, existing: bool
) -> None:
    _model(0), _model(1)
    outcomes = []
    for step in range(40):
        out = tmp_path / f"step{step}" / "run"
        if existing:
            _save(out, seed=0, threshold=0.1)
        killed = _kill_at_step(out, step, seed=1)
        outcome = _assert_absent_or_complete(out)
        outcomes.append((killed, outcome))
        if not killed:
            break
    assert outcomes[-1] == (False, "complete"), "save_run has more steps than the test kills at"
    assert len(outcomes) > 8  # every file write, flush and rename was a kill point
    # killed before the rename: absent (replacing: the old run waits beside it); after: complete
    assert {o for k, o in outcomes if k} == {"absent", "complete"}
    # the next save to a place a killed writer left cleans up what it left beside the run
    for step in range(len(outcomes)):
        out = tmp_path / f"step{step}" / "run"
        _save(out, seed=1, threshold=0.2)
        assert sorted(p.name for p in out.parent.iterdir()) == ["run"]


# -- `thyrocam train` killed with SIGKILL ----------------------------------------


def _train_cmd(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "thyrocam",
        "train",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--weights",
        "none",
        "--no-progress",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run_and_kill(data: Path, out: Path, *, delay: float | None) -> tuple[bool, float]:
    """Start a training; SIGKILL it after ``delay`` s, or (``None``) when its temp folder appears.

    Returns whether it was killed before it finished, and when (s after the start).
    """
    log = out.parent.parent / f"{out.parent.name}.stderr"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            _train_cmd(data, out), env=_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        start = time.monotonic()
        try:
            while proc.poll() is None and time.monotonic() - start < KILL_DEADLINE_S:
                due = delay is not None and time.monotonic() - start >= delay
                writing = delay is None and any(out.parent.glob(f".{out.name}.tmp-*"))
                if due or writing:
                    proc.kill()
                    break
                time.sleep(0.002)
            when = time.monotonic() - start
            proc.wait(timeout=KILL_DEADLINE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), log.read_text()[-2000:]
    return proc.returncode == -signal.SIGKILL, when


def test_train_killed_at_any_moment_leaves_no_run_or_a_complete_one(
    synth_dir: Path, tmp_path: Path
) -> None:
    image = sorted(synth_dir.glob("*_1.jpg"))[0]
    # killed the moment the run starts being written
    out = tmp_path / "a" / "run"
    killed, when = _run_and_kill(synth_dir, out, delay=None)
    assert killed, "training finished before its temporary run folder was seen"
    _assert_absent_or_complete(out, image)  # absent unless the kill came after the rename
    # killed half-way through (imports, data, epochs): nothing is written yet
    out = tmp_path / "b" / "run"
    assert _run_and_kill(synth_dir, out, delay=when / 2)[0]
    assert _assert_absent_or_complete(out, image) == "absent"
    assert sorted(p.name for p in out.parent.iterdir()) == []
    # replacing an existing run, killed while the new one is written: no run or a whole one
    out = tmp_path / "c" / "run"
    _save(out)
    assert _run_and_kill(synth_dir, out, delay=None)[0]
    _assert_absent_or_complete(out, image)
    # trained to the end over what the kill left: a complete run, nothing left beside it
    assert not _run_and_kill(synth_dir, out, delay=KILL_DEADLINE_S)[0]
    assert _assert_absent_or_complete(out, image) == "complete"
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_train_refuses_an_out_folder_that_is_not_a_run(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = subprocess.run(
        _train_cmd(synth_dir, out), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "out" in proc.stderr and "notes.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


# -- damaged runs: which file, what is wrong -----------------------------------------


def _edit_meta(run: Path, **changes) -> None:
    meta = json.loads((run / "meta.json").read_text())
    meta.update(changes)
    (run / "meta.json").write_text(json.dumps(meta))


def _edit_weights(run: Path, edit) -> None:
    state = load_file(str(run / "model.safetensors"))
    edit(state)
    save_file(state, str(run / "model.safetensors"), metadata={"format": "thyrocam-run"})


def _truncate(run: Path, keep: float) -> None:
    path = run / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = [
    ("truncated-half", lambda r: _truncate(r, 0.5), r"model\.safetensors.*truncated or corrupt"),
    ("truncated-header", lambda r: _truncate(r, 0.0001), r"model\.safetensors.*truncated"),
    ("empty-weights", lambda r: _truncate(r, 0.0), r"model\.safetensors.*0 bytes"),
    ("wrong-arch", lambda r: _edit_meta(r, arch="resnet50"), r"do not match a resnet50"),
    (
        "wrong-clinical-dim",
        lambda r: _edit_meta(r, clinical_dim=30),
        r"cat_maps\.json encodes 28 values but the model expects 30",
    ),
    (
        "wrong-hidden",
        lambda r: _edit_meta(r, hidden=32),
        r"model\.safetensors.*as meta\.json describes.*shape mismatch",
    ),
    (
        "heads-not-in-weights",
        lambda r: _edit_meta(r, heads=["malignancy", "outline"], descriptor_classes={}),
        r"model\.safetensors.*missing tensors \(first: outline",
    ),
    (
        "missing-tensor",
        lambda r: _edit_weights(r, lambda s: s.pop("cnn.fc.weight", None) or s.popitem()),
        r"model\.safetensors.*missing tensors",
    ),
    (
        "unexpected-tensor",
        lambda r: _edit_weights(r, lambda s: s.update(extra=torch.zeros(2))),
        r"model\.safetensors.*unexpected tensors \(first: extra\)",
    ),
    (
        "shape-mismatch",
        lambda r: _edit_weights(
            r, lambda s: s.update({k: torch.zeros(3) for k in [next(iter(s))]})
        ),
        r"model\.safetensors.*1 shape mismatches",
    ),
    (
        "clinical-dim-not-a-number",
        lambda r: _edit_meta(r, clinical_dim="28"),
        r"meta\.json: clinical_dim is '28'; expected int",
    ),
    ("meta-not-json", lambda r: (r / "meta.json").write_text('{"format": "thyro'), r"meta\.json"),
]


@pytest.mark.parametrize("damage,match", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_run_names_the_file_and_the_fault(tmp_path: Path, damage, match: str) -> None:
    run = _save(tmp_path / "run")
    damage(run)
    with pytest.raises(CheckpointError, match=match):
        load_run(run)


@pytest.mark.parametrize(
    "damage,match", [d[1:] for d in DAMAGE[:4]], ids=[d[0] for d in DAMAGE[:4]]
)
def test_health_says_why_a_damaged_run_is_not_loaded(tmp_path: Path, damage, match: str) -> None:
    from thyrocam.web import create_app

    run = _save(tmp_path / "run")
    damage(run)
    app = create_app({"TESTING": True, "CHECKPOINT": str(run), "UPLOAD_DIR": str(tmp_path / "up")})
    body = app.test_client().get("/health").get_json()
    assert body["model_loaded"] is False and body["status"] == "no_model"
    assert body["reason"] is not None
    import re

    assert re.search(match, body["reason"]), body["reason"]
