"""``python -m benchmarks`` (``make bench``): every benchmark, one table.

Small defaults keep the whole suite to a few minutes on a 2-core machine;
``--full`` uses the sizes the README's table was measured with. Ratios are
measured side by side in one run; nothing here is asserted.

    python -m benchmarks [--full] [--skip web,train] [--soak 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks._common import Row, describe_machine, make_data, make_run

SECTIONS = ("explain", "batch", "gpu", "web", "explain-batch", "train")


def _explain_rows(repeats: int) -> list[Row]:
    from benchmarks.explain_vs_predict import measure

    med = measure(size=224, repeats=repeats)
    return [
        Row("explain / predict latency, batch 1 (ResNet18, 224 px)",
            f"{med['explain'] / med['predict']:.2f}x "
            f"({med['explain'] * 1000:.1f} / {med['predict'] * 1000:.1f} ms)", "target <= 1.05"),
        Row("speed-up over pytorch-grad-cam, equal maps",
            f"{med['pytorch-grad-cam'] / med['explain']:.2f}x",
            f"max abs map difference {med['max_map_diff']:.1e}; target >= 2.5"),
    ]  # fmt: skip


def _print_table(title: str, rows: list[Row], seconds: float) -> None:
    width_name = max(len("benchmark"), *(len(r.name) for r in rows))
    width_value = max(len("result"), *(len(r.value) for r in rows))
    print(f"\n{title}\n")
    print(f"| {'benchmark':<{width_name}} | {'result':<{width_value}} | note |")
    print(f"|{'-' * (width_name + 2)}|{'-' * (width_value + 2)}|------|")
    for r in rows:
        print(f"| {r.name:<{width_name}} | {r.value:<{width_value}} | {r.note} |")
    print(f"\n(suite took {seconds:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--full", action="store_true", help="the larger sizes (tens of minutes)")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated sections: {','.join(SECTIONS)}"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    parser.add_argument("--clients", type=int, default=8, help="concurrent /explain clients")
    parser.add_argument("--soak", type=int, default=1000, help="/explain requests in the soak")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        parser.error(f"--skip: got {', '.join(sorted(unknown))}; allowed: {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    full = args.full
    title = f"thyrocam benchmarks: {describe_machine()}"
    start = time.perf_counter()
    rows: list[Row] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="thyrocam-bench-") as tmp_name:
        tmp = Path(tmp_name)
        lazy: dict[str, Path] = {}

        def data() -> Path:
            if "data" not in lazy:
                lazy["data"] = make_data(tmp / "synthetic", cases=300 if full else 48)
            return lazy["data"]

        def run96(mode: str) -> Path:
            if mode not in lazy:
                lazy[mode] = make_run(tmp / f"run_{mode}", size=96, mode=mode)
            return lazy[mode]

        def web_rows() -> list[Row]:
            from benchmarks import web_serving

            image = sorted(data().glob("*_1.jpg"))[0]
            return web_serving.run(run96("letterbox"), image, requests_n=400 if full else 96,
                                   clients=args.clients, soak=args.soak, tmp=tmp)  # fmt: skip

        def batch_rows() -> list[Row]:
            from benchmarks import scale

            return scale.explain_batch_rows(run96("roi"), data(), batch_size=16, tmp=tmp)

        def train_rows() -> list[Row]:
            from benchmarks import scale

            return scale.training_rows(data(), size=96 if full else 64, epochs=3 if full else 1,
                                       tmp=tmp)  # fmt: skip

        def cost_rows() -> list[Row]:
            from benchmarks import batch_cost

            # 10 repeats even by default: with 3, B=16 read anywhere from 0.77x to 1.22x.
            return batch_cost.run(size=224, batches=(1, 8, 16, 32), repeats=10)

        def gpu_rows() -> list[Row]:
            from benchmarks import gpu

            if not torch.cuda.is_available():
                return []
            run224 = make_run(tmp / "run_224", size=224)
            return gpu.run(run224, batch=32, repeats=20 if full else 5)

        sections: dict[str, Callable[[], list[Row]]] = {
            "explain": lambda: _explain_rows(30 if full else 10),
            "batch": cost_rows,
            "gpu": gpu_rows,
            "web": web_rows,
            "explain-batch": batch_rows,
            "train": train_rows,
        }
        for name, section in sections.items():
            if name in skip:
                continue
            print(f"[{time.perf_counter() - start:5.0f} s] {name} ...", file=sys.stderr, flush=True)
            try:
                rows.extend(section())
            except Exception as exc:  # one broken section must not hide the others' numbers
                traceback.print_exc(file=sys.stderr)
                rows.append(Row(name, "n/a", f"{type(exc).__name__}: {exc}"[:160]))
                failed = True
    _print_table(title, rows, time.perf_counter() - start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
