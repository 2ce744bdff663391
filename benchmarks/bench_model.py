"""Training and inference speed of CNN_TF: fp32 vs bf16, NCHW vs channels_last, three D2 variants.

For each architecture (``d2``: the D2 default, pools after Conv2 and Conv3; ``ser``:
pool_after=(1, 2, 3), the ``ser`` recipe's; ``ser-wide``: the same with Conv2-Conv5 1.5 times as
wide, ``--widths 48,72,96,120``; ``--variants`` picks some),
each precision and each memory format, it times ``--timed`` SGD steps and ``--timed`` eval
forward passes on random ``(batch, 1, 400, 200)`` segments after ``--warmup`` untimed ones, and
prints segments per second. Before timing it checks that the bf16 and channels_last outputs agree
with fp32 NCHW (the "reference"). Then, channels_last at the precision the CPU prefers, it times
ser-cli's layer order (ReLU after each max-pool, Conv1 pooled before its concatenation) against
the same weights in the textbook order (conv -> BN -> ReLU -> concatenate -> pool), after checking
that both give the same logits. It ends with what these rates mean for a full 10-fold EMO-DB
4-class evaluation with the paper's 50 epochs.

    python benchmarks/bench_model.py --batch 32 --timed 2
    python benchmarks/bench_model.py --variants ser,ser-wide --processes 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone

import copy

import torch
from torch import nn

from ser_cli.model import CNN, ModelConfig, autocast, cpu_has_native_bf16, resolve_device
from ser_cli.model import _Conv1, _ConvBNReLU, _MaxPoolReLU

VARIANTS = {
    "d2": ("D2 default (pool after 2,3)", ModelConfig(n_classes=4)),
    "ser": ("pool_after=(1,2,3)", ModelConfig(n_classes=4, pool_after=(1, 2, 3))),
    "ser-wide": ("pool_after=(1,2,3), widths 48,72,96,120",
                 ModelConfig(n_classes=4, pool_after=(1, 2, 3), widths=(48, 72, 96, 120))),
}


def _model(config: ModelConfig, device, channels_last: bool) -> CNN:
    torch.manual_seed(0)
    net = CNN(config).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def _textbook(net: CNN) -> CNN:
    """``net`` with the same weights in the textbook layer order: every conv -> BN -> ReLU, Conv1's
    groups concatenated, then ``nn.MaxPool2d``, as the trunk was built before ser-cli moved ReLU
    after the pools (the peer of the layer-order comparison)."""
    net = copy.deepcopy(net)
    layers = net.trunk.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, _Conv1):
            for group in layer.groups:
                group[2] = nn.ReLU(inplace=True)
            layer.pool = False
        elif isinstance(layer, _ConvBNReLU):
            layer[2] = nn.ReLU(inplace=True)
        elif isinstance(layer, _MaxPoolReLU) or (i == 1 and isinstance(layer, nn.Identity)):
            layers[i] = nn.MaxPool2d(2)
    return net


def _input(batch: int, device, channels_last: bool) -> torch.Tensor:
    x = torch.rand(batch, 1, 400, 200, generator=torch.Generator().manual_seed(1)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check(config: ModelConfig, device, batch: int) -> dict[str, float]:
    """Max |logit difference| of each variant against fp32 NCHW, eval mode."""
    out = {}
    with torch.no_grad():
        ref = _model(config, device, False).eval()(_input(batch, device, False)).float()
        for precision in ("fp32", "bf16"):
            for cl in (False, True):
                net = _model(config, device, cl).eval()
                with autocast(device, precision):
                    got = net(_input(batch, device, cl)).float()
                out[f"{precision}/{'CL' if cl else 'NCHW'}"] = float((got - ref).abs().max())
    return out


def time_train(config, device, precision, channels_last, batch, warmup, timed, textbook=False) -> float:
    net = _model(config, device, channels_last).train()
    net = _textbook(net) if textbook else net
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = _input(batch, device, channels_last)
    y = torch.randint(0, config.n_classes, (batch,), generator=torch.Generator().manual_seed(2)).to(device)
    elapsed = 0.0
    for step in range(warmup + timed):
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, precision):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if step >= warmup:
            elapsed += time.perf_counter() - t0
    return batch * timed / elapsed


def time_infer(config, device, precision, channels_last, batch, warmup, timed, textbook=False) -> float:
    net = _model(config, device, channels_last).eval()
    net = _textbook(net) if textbook else net
    x = _input(batch, device, channels_last)
    elapsed = 0.0
    with torch.inference_mode():
        for step in range(warmup + timed):
            _sync(device)
            t0 = time.perf_counter()
            with autocast(device, precision):
                net(x)
            _sync(device)
            if step >= warmup:
                elapsed += time.perf_counter() - t0
    return batch * timed / elapsed


def _train_in_process(args) -> float:
    """One spawned process: ``threads`` torch threads, wait at the barrier, time training."""
    config, precision, batch, warmup, timed, threads, barrier, textbook = args
    torch.set_num_threads(threads)
    barrier.wait()
    return time_train(config, torch.device("cpu"), precision, True, batch, warmup, timed, textbook)


def time_processes(config, precision, batch, warmup, timed, processes: int,
                   textbook: bool = False) -> tuple[float, list[float]]:
    """Training segments/s of ``processes`` 1-thread processes running at once (their sum)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        with ctx.Pool(processes) as pool:
            rates = pool.map(_train_in_process,
                             [(config, precision, batch, warmup, timed, 1, barrier, textbook)] * processes)
    return sum(rates), rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="segments per step (default 32)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timed", type=int, default=2, help="timed steps per cell (default 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--processes", type=int, default=0,
                        help="also time N 1-thread training processes at once against one "
                        "process with all threads (each variant but d2, channels_last)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default all)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"command: python benchmarks/bench_model.py {shlex.join(sys.argv[1:])}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}, device {device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"batch {args.batch}, {args.warmup} warm-up + {args.timed} timed steps per cell; segments/s\n")
    precisions = ["fp32"] if args.skip_bf16 else ["fp32", "bf16"]
    rates = {}
    for key in variants:
        name, config = VARIANTS[key]
        diffs = check(config, device, 2)
        print(f"== {name}: {sum(p.numel() for p in CNN(config).parameters())} parameters; "
              "max |logit - fp32 NCHW|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        assert diffs["fp32/CL"] < 1e-3, "channels_last fp32 disagrees with NCHW"
        print(f"{'precision':>9} {'layout':>6} {'train seg/s':>12} {'infer seg/s':>12}")
        for precision in precisions:
            for cl in (False, True):
                tr = time_train(config, device, precision, cl, args.batch, args.warmup, args.timed)
                inf = time_infer(config, device, precision, cl, args.batch, args.warmup, args.timed)
                rates[(key, precision, cl)] = (tr, inf)
                print(f"{precision:>9} {'CL' if cl else 'NCHW':>6} {tr:12.2f} {inf:12.2f}", flush=True)
        precision = "bf16" if (device.type == "cuda" or cpu_has_native_bf16()) and not args.skip_bf16 else "fp32"
        net = _model(config, device, True).eval()
        with torch.no_grad():
            x = _input(2, device, True)
            assert torch.equal(net(x), _textbook(net)(x)), "the layer orders disagree"
        # the two orders alternate, best of three each, so neither pays the other's warm-up
        best = {False: [0.0, 0.0], True: [0.0, 0.0]}
        for _ in range(3):
            for textbook in (True, False):
                timed = (time_train(config, device, precision, True, args.batch, args.warmup,
                                    args.timed, textbook),
                         time_infer(config, device, precision, True, args.batch, args.warmup,
                                    args.timed, textbook))
                best[textbook] = [max(a, b) for a, b in zip(best[textbook], timed)]
        (tr, inf), (tr0, inf0) = best[False], best[True]
        print(f"layer order, {precision} CL, best of 3 alternated: ser-cli's (ReLU after the pools) "
              f"train {tr:.2f} / infer {inf:.2f} seg/s, textbook train {tr0:.2f} / infer {inf0:.2f}: "
              f"{tr / tr0:.2f}x in training, {inf / inf0:.2f}x in inference (same logits)\n", flush=True)
    for key in variants if args.processes > 1 and device.type == "cpu" else ():
        if key == "d2":
            continue
        name, config = VARIANTS[key]
        precision = "bf16" if cpu_has_native_bf16() and not args.skip_bf16 else "fp32"
        one = rates[(key, precision, True)][0]
        total, each = time_processes(config, precision, args.batch, args.warmup, args.timed,
                                     args.processes)
        print(f"== parallel training, {name}, {precision}, channels_last: one process "
              f"with {torch.get_num_threads()} threads {one:.2f} seg/s; {args.processes} processes "
              f"with 1 thread each {total:.2f} seg/s in all ({', '.join(f'{r:.2f}' for r in each)}) "
              f"= {total / one:.2f}x (ser-cli evaluate --jobs)")
        total0, each0 = time_processes(config, precision, args.batch, args.warmup, args.timed,
                                       args.processes, textbook=True)
        print(f"   the same {args.processes} processes in the textbook order: {total0:.2f} seg/s in all "
              f"({', '.join(f'{r:.2f}' for r in each0)}); ser-cli's order {total / total0:.2f}x\n")
    # EMO-DB 4 classes (neutral, happy, angry, sad): 339 utterances; the 2 s copies give one
    # training segment each; 10 folds each train on ~9/10 of them for 50 epochs and score ~34.
    passes = 339 * 0.9 * 50 * 10
    print("10-fold EMO-DB 4-class evaluation, 50 epochs, ~1 training segment per utterance "
          f"({passes:.0f} segment passes; scoring is negligible):")
    for key in variants:
        name = VARIANTS[key][0]
        tr, inf = rates[(key, "fp32", True)]
        print(f"  {name}, fp32 channels_last: {passes / tr / 3600:.1f} h training "
              f"+ {339 * 1 / inf:.0f} s scoring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
