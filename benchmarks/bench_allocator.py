"""Training throughput with glibc's default malloc against ``keep_freed_memory`` (issue #10's runs).

Each mode runs in its own process (the allocator setting is process-wide): the ``ser`` layout
(pools after Conv1-3), bf16 where the CPU has it, channels_last, 1 thread, ``--batch`` random
segments, 1 warm-up + ``--steps`` timed AdamW steps. Prints segments/s, CPU seconds in user and
kernel mode, minor page faults and peak resident memory per mode, and the ratio. Two processes run
each mode at once with ``--processes 2`` (how ``evaluate --jobs 2`` trains).

    python benchmarks/bench_allocator.py --batch 64 --steps 4 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

CHILD = r"""
import json, resource, sys, time, torch
from ser_cli.model import CNN, ModelConfig, autocast, cpu_has_native_bf16, keep_freed_memory
kept = keep_freed_memory()
torch.set_num_threads(1)
batch, steps = int(sys.argv[1]), int(sys.argv[2])
precision = "bf16" if cpu_has_native_bf16() else "fp32"
torch.manual_seed(0)
net = CNN(ModelConfig(n_classes=4, pool_after=(1, 2, 3))).to(memory_format=torch.channels_last).train()
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
x = torch.rand(batch, 1, 400, 200).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 4, (batch,))
device = torch.device("cpu")
for step in range(1 + steps):
    if step == 1:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with autocast(device, precision):
        loss = torch.nn.functional.cross_entropy(net(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"kept": kept, "precision": precision, "seg_s": batch * steps / (t1 - t0),
                  "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "minflt": r1.ru_minflt - r0.ru_minflt, "maxrss_mb": r1.ru_maxrss / 1024}))
"""


def run_mode(system_malloc: bool, batch: int, steps: int, processes: int) -> list[dict]:
    env = {**os.environ, "SER_SYSTEM_MALLOC": "1" if system_malloc else "0"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(batch), str(steps)], env=env,
                                 stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [json.loads(child.communicate()[0]) for child in children]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternated runs per mode; the best is kept")
    args = parser.parse_args(argv)
    print(f"command: python benchmarks/bench_allocator.py {' '.join(sys.argv[1:])}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()[0]:.1f}")
    best = {}
    for _ in range(args.repeats):
        for system in (True, False):
            rows = run_mode(system, args.batch, args.steps, args.processes)
            total = sum(r["seg_s"] for r in rows)
            if system not in best or total > best[system][0]:
                best[system] = (total, rows)
    for system in (True, False):
        total, rows = best[system]
        name = "glibc default (SER_SYSTEM_MALLOC=1)" if system else "keep_freed_memory"
        print(f"{name}: {total:.2f} seg/s in all over {args.processes} process(es), {rows[0]['precision']}; "
              "per process: " + "; ".join(
                  f"{r['seg_s']:.2f} seg/s, user {r['user_s']:.1f} s, kernel {r['sys_s']:.1f} s, "
                  f"{r['minflt']} minor faults, peak RSS {r['maxrss_mb']:.0f} MB" for r in rows))
    print(f"keep_freed_memory: {best[False][0] / best[True][0]:.2f}x the training throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
