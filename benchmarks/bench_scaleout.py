"""x real time of ``analyze`` locally and on a LocalCluster of 1 and 2 Dask worker processes.

Checks first that every run wrote the same reports (byte for byte) as the local run, then prints
wall time and x real time. "cold" includes starting the cluster and each worker importing torch
and loading the model (what a one-off run pays); "warm" is a second run into a fresh folder on the
same cluster, with each worker's model cached (what every further file costs).

    python benchmarks/bench_scaleout.py --data /work/shared/data/emodb_original_subset/wav --files 20
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import tempfile
import time
from pathlib import Path

from ser_cli.analysis import _versions, analyze
from ser_cli.audio import info
from ser_cli.bench import _machine, _random_model, bench_inputs
from ser_cli.distributed import DaskBackend
from ser_cli.model import ModelConfig

REPORTS = ("utterances.csv", "utterances.json", "segments.csv", "segments.json", "segments.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder of audio (default: synthetic)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--model", default=None, help="default: random paper-sized CNN")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    import distributed

    with tempfile.TemporaryDirectory(prefix="ser-bench-scaleout-") as tmp:
        tmp_path = Path(tmp)
        files, _ = bench_inputs(args.data, math.inf, tmp_path, max_files=args.files)
        audio_s = sum(info(f).duration_s for f in files)
        model = args.model or str(_random_model(tmp_path / "paper.pt", ModelConfig(n_classes=4)))
        rows = []

        t0 = time.perf_counter()
        analyze(files, tmp_path / "local", model=model, device="cpu", precision="fp32",
                batch_size=args.batch_size, progress=False)
        rows.append(("local (2 decoder threads, torch 2 threads)", time.perf_counter() - t0, None))
        for n in [int(x) for x in args.workers.split(",")]:
            t0 = time.perf_counter()
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                analyze(files, tmp_path / f"dask{n}-cold", model=model, device="cpu",
                        precision="fp32", batch_size=args.batch_size, progress=False,
                        backend=DaskBackend(client))
                cold = time.perf_counter() - t0
                t1 = time.perf_counter()
                analyze(files, tmp_path / f"dask{n}-warm", model=model, device="cpu",
                        precision="fp32", batch_size=args.batch_size, progress=False,
                        backend=DaskBackend(client))
                warm = time.perf_counter() - t1
            for tag in ("cold", "warm"):
                for name in REPORTS:
                    assert filecmp.cmp(tmp_path / "local" / name, tmp_path / f"dask{n}-{tag}" / name,
                                       shallow=False), (n, tag, name)
            rows.append((f"dask, {n} worker process(es), cold", cold, None))
            rows.append((f"dask, {n} worker process(es), warm", warm, None))
        print(f"bench scale-out: {len(files)} files, {audio_s:.1f} s of audio "
              f"({args.data or 'synthetic speech-like, 2-8 s'}), model "
              f"{'random paper-sized CNN' if not args.model else args.model}, batch "
              f"{args.batch_size}, fp32 CPU")
        print(f"machine: {_machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"{json.dumps(_versions())}")
        print("reports of every dask run == local run, byte for byte: yes")
        print(f"{'run':<44} {'wall s':>8} {'x real time':>12}")
        for name, wall, _ in rows:
            print(f"{name:<44} {wall:>8.2f} {audio_s / wall:>12.2f}")


if __name__ == "__main__":
    main()
