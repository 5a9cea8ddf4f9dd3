"""notebooks/explainability.ipynb: stored clean, imports only thyrocam, runs top to bottom."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explainability.ipynb"
# Display and the two environment variables; everything else is thyrocam.
ALLOWED_IMPORTS = {"thyrocam", "matplotlib", "os", "pathlib"}


def _code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_is_stored_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code"
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_notebook_imports_only_thyrocam_and_display() -> None:
    imported = set()
    for source in _code_cells():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
    assert "thyrocam" in imported
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS


def test_notebook_uses_the_documented_layer() -> None:
    assert any("predictor.model.cnn.layer4[-1].conv2" in s for s in _code_cells())


def test_notebook_runs_top_to_bottom(
    tiny_run: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("THYROCAM_RUN", str(tiny_run))
    monkeypatch.setenv("THYROCAM_DATA", str(synth_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" resolves to this interpreter (jupyter_client swaps "python" in the
    # kernel spec for sys.executable), so the kernel sees this venv's thyrocam.
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=900,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "completeness error" in text
    assert "gradcam" in text and "layercam-fused" in text and "pointing_malignant" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # input, with/without, frame overlay, methods, attributions
