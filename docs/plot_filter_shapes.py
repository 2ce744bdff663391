"""Plot the filter-shape study (the paper's Fig. 2) from `ser-cli evaluate` outputs.

Each run is one Conv1 shape, in a folder named ``<height>x<width>`` (e.g. ``10x2``) holding
``metrics.json``. Writes ``fig2_height.png`` (width 2, heights on the x axis) and
``fig2_width.png`` (height 2, widths on the x axis): WA and per-class recall against the shape,
and prints the same numbers as a Markdown table, each shape paired with the paper's pick on its
axis (10 × 2 for heights, 2 × 8 for widths): utterances right only with it / only with the pick,
exact McNemar p. The plots' titles say how many folds and epochs
the runs had (read from their ``metrics.json``), so a reduced run is labelled as one.

    python docs/plot_filter_shapes.py runs/fig2 docs/results/fig2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from render_paper_tables import correct, fmt_p, mcnemar

#: the paper's choices (SPEC §6: WA levels off from height about 10, peaks near width 8)
PICKS = {"height": (10, 2), "width": (2, 8)}


def load(root: Path) -> dict[tuple[int, int], dict]:
    runs = {}
    for metrics in sorted(root.glob("*x*/metrics.json")):
        height, width = (int(v) for v in metrics.parent.name.split("x"))
        runs[(height, width)] = json.loads(metrics.read_text())
        runs[(height, width)]["dir"] = metrics.parent
    return runs


def protocol(runs: dict[tuple[int, int], dict]) -> str:
    """``"<folds> folds, <epochs> epochs"`` shared by every run; raises if the runs differ."""
    kinds = {(m["n_folds"], m["epochs"], m["partial"]) for m in runs.values()}
    if len(kinds) != 1:
        raise SystemExit(f"the runs differ in folds, epochs or completeness: {sorted(kinds)}")
    folds, epochs, partial = kinds.pop()
    return f"{folds} folds{' (partial)' if partial else ''}, {epochs} epochs"


def plot(runs: dict[tuple[int, int], dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    for axis, fixed, name in ((0, 1, "height"), (1, 0, "width")):
        shapes = sorted((s for s in runs if s[fixed] == 2), key=lambda s: s[axis])
        if len(shapes) < 2:
            continue
        xs = [s[axis] for s in shapes]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, [100 * runs[s]["wa"] for s in shapes], "k-o", label="WA", linewidth=2)
        for c in runs[shapes[0]]["classes"]:
            ax.plot(xs, [100 * (runs[s]["recalls"][c] or 0) for s in shapes], "--.", label=c)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(f"Conv1 filter {name} ({'frequency bins, 10 Hz' if name == 'height' else 'frames, 10 ms'}); "
                      f"{'width' if name == 'height' else 'height'} 2")
        ax.set_ylabel("%")
        ax.set_title(f"Conv1 alone + GAP: accuracy against filter {name}\n"
                     f"{len(runs[shapes[0]]['classes'])} classes, {protocol(runs)}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"fig2_{name}.png", dpi=100)
        plt.close(fig)


def table(runs: dict[tuple[int, int], dict]) -> str:
    classes = next(iter(runs.values()))["classes"]
    lines = ["| shape (h × w) | WA % | UA % | " + " | ".join(f"{c} %" for c in classes)
             + " | against the pick: right only here / only there |",
             "|---|---|---|" + "---|" * len(classes) + "---|"]
    for (h, w), m in sorted(runs.items(), key=lambda kv: (kv[0][1] != 2, kv[0][1], kv[0][0])):
        recalls = " | ".join(f"{100 * (m['recalls'][c] or 0):.1f}" for c in classes)
        if (h, w) in PICKS.values():
            versus = "the pick"
        else:
            # 2 x 2 is on both axes: against both picks
            picks = [PICKS["height"]] * (w == 2) + [PICKS["width"]] * (h == 2)
            cells = []
            for pick in (q for q in picks if q in runs):
                here, there, p = mcnemar(correct(m["dir"]), correct(runs[pick]["dir"]))
                cells.append(f"{here} / {there} against {pick[0]} × {pick[1]}, {fmt_p(p)}")
            versus = "; ".join(cells) or "–"
        lines.append(f"| {h} × {w} | {100 * m['wa']:.1f} | {100 * m['ua']:.1f} | {recalls} | {versus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    found = load(source)
    if not found:
        sys.exit(f"{source}: no <height>x<width>/metrics.json folders")
    plot(found, target)
    print(f"{protocol(found)}\n")
    print(table(found))
