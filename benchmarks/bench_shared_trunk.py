"""Shared-trunk vs per-segment scoring with the same utterance-normalised model, in one run.

Measures, on the same files:

(a) agreement: per-segment and per-utterance labels of ``analyze(..., shared_trunk=True)``
    against ``analyze(...)`` (per-segment scoring) with the SAME model;
(b) speed: x real time of ``analyze`` end to end (model load and freeze included), both ways,
    after a warm-up of each, the fastest of ``--repeats`` alternated runs;
(c) convolution FLOPs per second of audio, both ways, counted analytically from the layer
    shapes (ser_cli.trunk.conv_flops) for the files' frame counts.

The model must be trained with ``--normalization utterance`` (``--model``). Without one, a
randomly initialised utterance-normalised CNN is used: its speed is meaningful, its agreement is
NOT (random weights give near-tied logits, so small input differences flip labels more often than
a trained model's would).

Usage::

    python benchmarks/bench_shared_trunk.py [--model M.pt] [--data DIR | $SER_DATA] \
        [--seconds 120] [--pool-after 2,3] [--threads 2] [--long-s 60]

Without --data: synthetic speech-like files of 2-8 s (ser_cli.bench.bench_inputs), plus
one file of ``--long-s`` seconds, so both the short-utterance and long-file regimes are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from ser_cli.analysis import analyze, default_batch_size
from ser_cli.audio import info
from ser_cli.bench import _machine, _random_model, bench_inputs
from ser_cli.features import FeatureConfig, n_frames
from ser_cli.model import ModelConfig, load_model
from ser_cli.trunk import conv_flops, conv_flops_per_second


def run(model=None, data=None, seconds=120.0, pool_after=(2, 3), threads=2, long_s=60.0,
        batch_size=None, repeats=3) -> dict:
    torch.set_num_threads(threads)
    batch_size = batch_size or default_batch_size("cpu")
    with tempfile.TemporaryDirectory(prefix="ser-bench-trunk-") as tmp_name:
        tmp = Path(tmp_name)
        random_weights = model is None
        if model is None:
            model = _random_model(tmp / "random-utterance.pt",
                                  ModelConfig(n_classes=4, pool_after=tuple(pool_after)),
                                  FeatureConfig(normalization="utterance"))
        loaded = load_model(model)
        files, source = bench_inputs(data, seconds, tmp, long_s)
        durations = {f: info(f).duration_s for f in files}
        audio_s = sum(durations.values())

        def score(shared, subset, out):
            result = analyze(subset, out, model=model, device="cpu", precision="fp32",
                             batch_size=batch_size, shared_trunk=shared, progress=False)
            if result.n_error:
                bad = next(u for u in result.utterances if u["status"] == "error")
                raise SystemExit(f"{result.n_error} files failed, e.g. {bad['error']}")
            return result

        # Warm both paths (file cache, TorchScript's first-call optimisation) before timing, then
        # alternate the two and keep each one's fastest run, so neither pays the other's warm-up.
        for shared in (False, True):
            score(shared, files[:4], tmp / f"warm-{shared}")
        results, walls = {}, {False: float("inf"), True: float("inf")}
        for rep in range(repeats):
            for shared in (False, True):
                out = tmp / f"out-{shared}-{rep}"
                t0 = time.perf_counter()
                result = score(shared, files, out)
                walls[shared] = min(walls[shared], time.perf_counter() - t0)
                rows = [json.loads(line) for line in
                        (out / "segments.jsonl").read_text().splitlines()]
                results[shared] = (
                    {u["file"]: u["label"] for u in result.utterances},
                    {(r["file"], r["index"]): r["label"] for r in rows},
                )
        utt_a, seg_a = results[False]
        utt_b, seg_b = results[True]
        seg_agree = sum(seg_b[k] == v for k, v in seg_a.items())
        utt_agree = sum(utt_b[k] == v for k, v in utt_a.items())

        mc, sc = loaded.model_config, loaded.segment_config
        frames = [n_frames(int(round(durations[f] * 16000))) for f in files]
        flops_all = conv_flops_per_second(mc, frames, sc)
        long_frames = [n_frames(int(round(durations[f] * 16000))) for f in files
                       if durations[f] >= 30.0]
        flops_long = conv_flops_per_second(mc, long_frames, sc) if long_frames else None
    return {
        "source": source,
        "model": str(model) if not random_weights else f"random init, utterance-normalised, "
                                                        f"pool_after={tuple(pool_after)}",
        "random_weights": random_weights,
        "pool_after": list(mc.pool_after),
        "files": len(files),
        "audio_s": round(audio_s, 2),
        "segments": len(seg_a),
        "threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "per_segment": {"wall_s": round(walls[False], 2), "x_real_time": round(audio_s / walls[False], 2)},
        "shared": {"wall_s": round(walls[True], 2), "x_real_time": round(audio_s / walls[True], 2)},
        "speedup": round(walls[False] / walls[True], 2),
        "segment_agreement": round(seg_agree / len(seg_a), 4),
        "utterance_agreement": round(utt_agree / len(utt_a), 4),
        "segment_flops": conv_flops(mc, sc.segment_frames),
        "gflops_per_audio_s": {
            "per_segment": round(flops_all["per_segment"] / 1e9, 3),
            "shared": round(flops_all["shared"] / 1e9, 3),
            "ratio": round(flops_all["ratio"], 2),
        },
        "gflops_per_audio_s_long_files": None if flops_long is None else {
            "per_segment": round(flops_long["per_segment"] / 1e9, 3),
            "shared": round(flops_long["shared"] / 1e9, 3),
            "ratio": round(flops_long["ratio"], 2),
        },
        "machine": _machine(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
    }


def format_report(r: dict) -> str:
    f, fl = r["gflops_per_audio_s"], r["gflops_per_audio_s_long_files"]
    lines = [
        f"bench shared trunk: {r['files']} files, {r['audio_s']:.1f} s ({r['source']}), "
        f"{r['segments']} segments; model {r['model']}",
        f"machine: {r['machine']}; torch threads {r['threads']}, batch {r['batch_size']}, "
        f"fastest of {r['repeats']} alternated runs after a warm-up; "
        f"load average {', '.join(f'{x:.1f}' for x in r['load_average'])}; {r['date']}",
        f"{'scoring':<14} {'wall s':>8} {'x real time':>12} {'conv GFLOP / audio s':>21}",
        f"{'per segment':<14} {r['per_segment']['wall_s']:>8.2f} {r['per_segment']['x_real_time']:>12.2f} "
        f"{f['per_segment']:>21.3f}",
        f"{'shared trunk':<14} {r['shared']['wall_s']:>8.2f} {r['shared']['x_real_time']:>12.2f} "
        f"{f['shared']:>21.3f}",
        f"end-to-end speed-up {r['speedup']:.2f}x; conv FLOPs {f['ratio']:.2f}x fewer "
        + (f"(files >= 30 s: {fl['ratio']:.2f}x, {fl['per_segment']:.2f} -> {fl['shared']:.2f} GFLOP/s)"
           if fl else ""),
        f"labels agree: segments {100 * r['segment_agreement']:.1f} %, utterances "
        f"{100 * r['utterance_agreement']:.1f} %"
        + ("  (RANDOM WEIGHTS: agreement not meaningful)" if r["random_weights"] else ""),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="utterance-normalised model file")
    parser.add_argument("--data", default=os.environ.get("SER_DATA"),
                        help="folder of audio (default $SER_DATA, else synthetic)")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio from --data / synthetic")
    parser.add_argument("--long-s", type=float, default=60.0,
                        help="length of one extra long synthetic file (0: none)")
    parser.add_argument("--pool-after", default="2,3", help="for the random model: 2,3 or 1,2,3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="segments per model call (default: analyze's CPU default, 8)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each scoring, alternated; the fastest is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(model=args.model, data=args.data, seconds=args.seconds,
                 pool_after=tuple(int(v) for v in args.pool_after.split(",")),
                 threads=args.threads, long_s=args.long_s, batch_size=args.batch_size,
                 repeats=args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    print("command: " + " ".join(["python", *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
