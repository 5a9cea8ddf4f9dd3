"""The output folder of an explain-batch job: per-item files written atomically, and the index.

Layout of ``DIR``::

    job.json            what made these results (run, weight hash, method, target, data)
    cams/<id>.npy       float16 (S, S) CAM at the network input's resolution
    overlays/<id>.png   with --overlays
    rows/<id>.json      the item's index row; written last, so its presence means "done"
    index.parquet       one row per finished image (all shards), rebuilt at the end of a job

Every file is written to a temporary name in its final folder and moved into
place with ``os.replace`` (atomic on POSIX), so a killed job leaves only whole
files, and a restarted job skips exactly the items whose row exists.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thyrocam.batch.engine import ItemResult
from thyrocam.errors import InputError

__all__ = ["INDEX", "INDEX_SCHEMA", "JOB", "ResultStore"]

INDEX = "index.parquet"
JOB = "job.json"
# The keys of job.json that must match for a job to resume in (or add a shard to) a folder.
_JOB_KEYS = ("weights_sha256", "method", "target", "data")

INDEX_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("order", pa.int64()),
        ("path", pa.string()),
        ("case_id", pa.string()),
        ("probability", pa.float64()),
        ("logit", pa.float64()),
        ("label", pa.string()),
        ("threshold", pa.float64()),
        ("true_label", pa.int64()),
        ("target", pa.string()),
        ("method", pa.string()),
        ("cam_path", pa.string()),
        ("cam_all_zero", pa.bool_()),
        ("peak_x", pa.float64()),
        ("peak_y", pa.float64()),
        ("energy_in_outline", pa.float64()),
        ("roi", pa.list_(pa.float64())),
        ("overlay_path", pa.string()),
        ("weights_sha256", pa.string()),
        ("error", pa.string()),
    ]
)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class ResultStore:
    """An explain-batch output folder.

    Args:
        out: the folder (created).
        job: what makes these results; a folder already holding another job's
            results is refused rather than mixed.

    Raises:
        InputError: ``out`` is a file, or holds results of a different job.
    """

    def __init__(self, out: str | os.PathLike, *, job: dict[str, Any]) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InputError(
                f"out: got '{self.out}', which is a file; allowed: a folder (new or from "
                "an earlier run of the same job)",
                field="out",
                value=str(self.out),
                allowed="a folder",
            )
        for sub in ("cams", "overlays", "rows"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.job = dict(job)
        self._check_job()

    def _check_job(self) -> None:
        path = self.out / JOB
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            for key in _JOB_KEYS:
                if old.get(key) != self.job.get(key):
                    raise InputError(
                        f"out: '{self.out}' holds results of another job ({key} was "
                        f"{old.get(key)!r}, now {self.job.get(key)!r}); allowed: a new folder, "
                        "or the same run, data, method and target to resume",
                        field="out",
                        value=str(self.out),
                        allowed="a new folder or the same job",
                    )
            return
        _atomic_write(path, (json.dumps(self.job, indent=2) + "\n").encode("utf-8"))

    def done_ids(self, *, overlays: bool) -> set[str]:
        """Ids whose row exists (and, when ``overlays``, whose overlay too)."""
        done = {p[: -len(".json")] for p in os.listdir(self.out / "rows") if p.endswith(".json")}
        if overlays:
            pngs = {
                p[: -len(".png")] for p in os.listdir(self.out / "overlays") if p.endswith(".png")
            }
            done &= pngs
        return done

    def write(self, result: ItemResult) -> None:
        """Store one result: CAM, overlay, then the row (its presence marks the item done)."""
        row = dict(result.row)
        item_id = result.item.id
        row["cam_path"] = None
        row["overlay_path"] = None
        if result.cam is not None:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(result.cam, dtype=np.float16))
            row["cam_path"] = f"cams/{item_id}.npy"
            _atomic_write(self.out / row["cam_path"], buf.getvalue())
        if result.overlay_png is not None:
            row["overlay_path"] = f"overlays/{item_id}.png"
            _atomic_write(self.out / row["overlay_path"], result.overlay_png)
        row["weights_sha256"] = self.job["weights_sha256"]
        _atomic_write(self.out / "rows" / f"{item_id}.json", json.dumps(row).encode("utf-8"))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Shards finishing together: whoever takes the lock last lists the rows last,
        # so the final index.parquet holds every row finished before it.
        with open(self.out / ".index.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def write_index(self) -> Path:
        """Rebuild ``index.parquet`` from every row in the folder, in data-set order."""
        with self._locked():
            rows = []
            for name in os.listdir(self.out / "rows"):
                if name.endswith(".json"):
                    rows.append(json.loads((self.out / "rows" / name).read_text("utf-8")))
            rows.sort(key=lambda r: (r["order"], r["id"]))
            columns = {col: [r.get(col) for r in rows] for col in INDEX_SCHEMA.names}
            table = pa.table(columns, schema=INDEX_SCHEMA)
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            _atomic_write(self.out / INDEX, buf.getvalue().to_pybytes())
        return self.out / INDEX
