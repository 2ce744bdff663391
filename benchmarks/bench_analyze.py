"""Benchmark ``ser-cli analyze`` end to end against a naive librosa + numpy pipeline.

Same code as ``ser-cli bench analyze`` (``ser_cli.bench.bench_analyze``): both pipelines score
the same files with the same weights in fp32 on the CPU, their utterance probabilities are
compared first, then wall times, x real time and the model-only ceiling are printed.

    python benchmarks/bench_analyze.py --data ../shared/data/emodb_original_subset/wav --seconds 300
    python benchmarks/bench_analyze.py --seconds 300          # synthetic speech-like files
"""

from __future__ import annotations

import argparse
import json
import os

from ser_cli.bench import bench_analyze, format_bench_analyze


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SER_DATA"),
                        help="folder of real speech (default $SER_DATA; else synthetic files)")
    parser.add_argument("--seconds", type=float, default=300.0, help="audio to time, seconds")
    parser.add_argument("--model", default=None, help="model file (default: bundled or random)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = bench_analyze(args.data, seconds=args.seconds, model=args.model,
                           threads=args.threads, batch_size=args.batch_size, jobs=args.jobs)
    print(json.dumps(report, indent=2) if args.json else format_bench_analyze(report))


if __name__ == "__main__":
    main()
