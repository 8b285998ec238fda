"""Benchmark the data pipeline (issue 2): throughput against raw reads, and flat memory.

Run: ``.venv/bin/python benchmarks/pipeline.py`` (prints a markdown table).
``main()`` returns the figures as a dict for ``benchmarks/run_all.py``.

1. Throughput: 256 x 256 training patches per second from 650 x 650 6-band
   uint16 tiles (uncompressed and Deflate), next to the raw tifffile read rate
   of the same image+mask files (page cache warm for both). The train stream
   cuts ``crops_per_read`` crops from each tile read, so the raw rate in
   patches/s is tiles/s x crops per read. Goal: pipeline >= 0.9 x raw.
2. Memory: peak RSS (ru_maxrss) of a fresh process that scans a dataset,
   computes normalisation and iterates one epoch (one pass over the tiles),
   for 50 and for 500 tiles. Goal: the same within 10 %. The 500 tiles are the
   50 generated ones copied ten times (about 2.5 GB in a temporary folder
   under /tmp, deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE, CHANNELS, PATCH, BATCH = 650, 6, 256, 8


def _make(folder: Path, tiles: int, compression: str | None) -> Path:
    from core.synthetic import make_dataset

    return make_dataset(folder, tiles=tiles, size=SIZE, channels=CHANNELS, seed=2,
                        compression=compression)


def _raw_read_rate(tiles: list[Any], repeats: int = 2) -> float:
    """Tiles (image + mask) per second, read sequentially with tifffile.imread."""
    import tifffile

    for tile in tiles:  # warm the page cache, as the pipeline run will find it
        tifffile.imread(tile.image_path)
        tifffile.imread(tile.mask_path)
    start = time.perf_counter()
    for _ in range(repeats):
        for tile in tiles:
            tifffile.imread(tile.image_path)
            tifffile.imread(tile.mask_path)
    return repeats * len(tiles) / (time.perf_counter() - start)


def _pipeline_rate(tiles: list[Any], crops_per_tile: int, epochs: int = 3) -> tuple[float, float]:
    """(patches per second, mean crops per read) of the train stream, after one warm-up epoch."""
    from core.pipeline import compute_normalization, crops_per_read, make_train_dataset

    norm = compute_normalization(tiles, method="percentile", seed=0)
    steps = len(tiles) * crops_per_tile // BATCH
    data = make_train_dataset(tiles, kind="binary", num_outputs=1, normalization=norm,
                              patch_size=PATCH, batch_size=BATCH, augment="dihedral", seed=0,
                              steps_per_epoch=steps)
    iterator = iter(data)
    for _ in range(steps):  # warm-up epoch: graph building, thread pools, autotune
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps * epochs):
        next(iterator)
    elapsed = time.perf_counter() - start
    return steps * epochs * BATCH / elapsed, crops_per_read(len(tiles), steps * BATCH)


def _rss_child(folder: str) -> None:
    """One fresh process: scan, normalise, iterate one epoch; print peak RSS in MiB as JSON."""
    from core.pipeline import compute_normalization, make_train_dataset, steps_per_pass
    from core.tiles import scan_dataset

    info = scan_dataset(folder, patch_size=PATCH)
    tiles = list(info.tiles)
    norm = compute_normalization(tiles, method="percentile", seed=0)
    steps = steps_per_pass(len(tiles), batch_size=BATCH)
    data = make_train_dataset(tiles, kind="binary", num_outputs=1, normalization=norm,
                              patch_size=PATCH, batch_size=BATCH, augment="dihedral", seed=0,
                              steps_per_epoch=steps)
    start = time.perf_counter()
    count = sum(1 for _ in data.take(steps))
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tiles": len(tiles), "batches": count, "seconds": elapsed,
                      "peak_rss_mib": peak_kib / 1024}))


def _measure_rss(folder: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--rss-child", str(folder)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(*, workdir: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run the benchmark; return its figures (and print a markdown table when verbose)."""
    from core.tiles import scan_dataset

    base = Path(tempfile.mkdtemp(prefix="tilewatch-bench-", dir=workdir))
    results: dict[str, Any] = {"throughput": [], "rss": []}
    try:
        for label, compression in (("uncompressed", None), ("deflate", "deflate")):
            tiles = list(scan_dataset(_make(base / label, 24, compression), pixel_stats=False).tiles)
            raw = _raw_read_rate(tiles)
            rate, crops = _pipeline_rate(tiles, crops_per_tile=4)
            results["throughput"].append({
                "files": label, "raw_tiles_per_s": raw, "crops_per_read": crops,
                "raw_patches_per_s": raw * crops, "pipeline_patches_per_s": rate,
                "ratio": rate / (raw * crops)})
        small = _make(base / "rss50", 50, None)
        large = base / "rss500"
        for sub in ("images", "masks"):
            (large / sub).mkdir(parents=True)
            for copy in range(10):
                for path in sorted((small / sub).glob("*.tif")):
                    shutil.copyfile(path, large / sub / f"c{copy}_{path.name}")
        for folder in (small, large):
            results["rss"].append(_measure_rss(folder))
        results["rss_ratio"] = results["rss"][1]["peak_rss_mib"] / results["rss"][0]["peak_rss_mib"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if verbose:
        print(format_table(results))
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as markdown tables."""
    lines = [
        f"Pipeline throughput ({PATCH}x{PATCH} crops of {SIZE}x{SIZE}x{CHANNELS} uint16 tiles, "
        f"batch {BATCH}, dihedral augmentation, {os.cpu_count()} CPU cores)",
        "",
        "| files | raw read (tiles/s) | crops per read | raw read (patches/s) "
        "| pipeline (patches/s) | pipeline / raw |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["throughput"]:
        lines.append(f"| {row['files']} | {row['raw_tiles_per_s']:.1f} | {row['crops_per_read']:.1f} "
                     f"| {row['raw_patches_per_s']:.1f} | {row['pipeline_patches_per_s']:.1f} "
                     f"| {row['ratio']:.2f}x |")
    lines += ["", "Peak RSS over one epoch (scan + normalisation + one pass, fresh process)", "",
              "| tiles | batches | epoch time (s) | peak RSS (MiB) |", "|---|---|---|---|"]
    for row in results["rss"]:
        lines.append(f"| {row['tiles']} | {row['batches']} | {row['seconds']:.1f} "
                     f"| {row['peak_rss_mib']:.0f} |")
    lines += ["", f"RSS 500 / 50 tiles: {results['rss_ratio']:.3f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child)
    else:
        main()
