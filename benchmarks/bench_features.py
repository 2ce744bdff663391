"""Spectrogram front-end benchmark without the CLI: same code as ``ser-cli bench features``.

Usage: python benchmarks/bench_features.py [--seconds 600] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json

from ser_cli.bench import bench_features, format_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="signal length in seconds")
    parser.add_argument("--threads", type=int, default=1, help="threads for ser-cli and peers")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    report = bench_features(seconds=args.seconds, threads=args.threads)
    print(json.dumps(report, indent=2) if args.json else format_features(report))


if __name__ == "__main__":
    main()
