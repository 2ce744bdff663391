"""Model cards: a Markdown description of a model file, rendered from what the file and its
evaluations record, so that no number in a card is typed by hand.

A card has the data (corpora, counts per class and speaker), the recipe and the exact training
command, the decisions D1–D5 as used, every evaluation given (``ser-cli evaluate`` output
folders: WA, UA, per-class recall, confusion matrix, folds and epochs, partial runs labelled),
and the limitations of acted-speech models.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ser_cli.errors import ConfigError

__all__ = ["render_card", "render_evaluation", "read_evaluation"]

_LIMITATIONS = """\
- Trained and evaluated on **acted** emotional speech read by professional or semi-professional
  actors (EMO-DB: German; RAVDESS: North-American English). Spontaneous speech, other languages,
  children's voices, telephone-band or noisy recordings are outside what was measured.
- The network sees 2 s windows of 0–{band} kHz; an utterance's label is the average over its windows
  (0.4 s apart). Emotion that changes within a file is averaged away: read the per-segment report.
- Scores are the softmax of a small CNN, not calibrated probabilities.
- Speaker-independent numbers come from leave-speakers-out folds; with 10–34 speakers per corpus
  they carry several points of uncertainty.
- They are measured on new speakers of the corpora the model was trained on. On recordings unlike
  those (another corpus, language or microphone) expect much less: where the card has a
  cross-corpus evaluation (trained on one corpus, tested on the other), that is the better guide.
"""


def read_evaluation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``ser-cli evaluate`` output folder (its ``metrics.json``).

    Parameters
    ----------
    path : path-like
        The folder given to ``ser-cli evaluate -o``, or its ``metrics.json``.

    Returns
    -------
    dict
        The metrics as written by :func:`ser_cli.evaluate`.

    Raises
    ------
    ConfigError
        No readable ``metrics.json`` there (the message names the path).

    Examples
    --------
    >>> read_evaluation("no-such-dir")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: no-such-dir: no metrics.json (run 'ser-cli evaluate -o no-such-dir' first)
    """
    p = Path(path)
    target = p if p.suffix == ".json" else p / "metrics.json"
    try:
        return json.loads(target.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no metrics.json (run 'ser-cli evaluate -o {path}' first)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{target}: not a readable metrics file ({exc})") from exc


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _deviations(meta: Mapping[str, Any]) -> list[str]:
    """Settings of the model that differ from ser-cli's paper-faithful defaults."""
    from dataclasses import asdict

    from ser_cli.features import FeatureConfig
    from ser_cli.model import ModelConfig
    from ser_cli.segmentation import SegmentConfig
    from ser_cli.training import TrainConfig

    defaults = {
        "feature_config": asdict(FeatureConfig()),
        "segment_config": asdict(SegmentConfig()),
        "model_config": asdict(ModelConfig(n_classes=len(meta.get("classes", [])) or 2)),
        "train_config": asdict(TrainConfig()),
    }
    out = []
    for section, default in defaults.items():
        for key, value in (meta.get(section) or {}).items():
            if key in default and json.dumps(value) != json.dumps(default[key]):
                out.append(f"`{key}` = {json.dumps(value)} (paper-faithful default {json.dumps(default[key])})")
    return out


def _recipe_text(tc: Mapping[str, Any], sc: Mapping[str, Any], training: Mapping[str, Any],
                 outcome: bool = True) -> str:
    """The training recipe of a model's metadata, in one paragraph.

    ``outcome``: end with the device, precision, final loss and accuracy (an ensemble's card
    gives them per member instead, and ``tc['seed']`` may then be a list of the members').
    """
    if tc.get("optimizer", "sgd") == "adamw":
        optimiser = f"AdamW, decoupled weight decay {tc.get('weight_decay')}"
    else:
        optimiser = f"SGD (Nesterov momentum {tc.get('momentum')}), weight decay {tc.get('weight_decay')}"
    if tc.get("lr_schedule", "step") == "onecycle":
        schedule = (f"learning rate warmed up to {tc.get('lr')} over the first 10 % of the steps, "
                    "then cosine to 0")
    else:
        schedule = f"learning rate {tc.get('lr')} divided by 10 after epochs {training.get('lr_milestones')}"
    if tc.get("sampling", "segments") == "crops":
        sampling = (f"each epoch {tc.get('crops_per_utterance')} random 2 s windows per utterance "
                    f"({training.get('n_segments')} training segments per epoch)")
    else:
        sampling = (f"{training.get('n_segments')} training segments (2 s, every "
                    f"{sc.get('train_hop_frames', 0) / 100:.1f} s)")
    augment = []
    if tc.get("speed_factors"):
        augment.append(f"speed perturbation {', '.join(map(str, tc['speed_factors']))}")
    if tc.get("noise_snr_db"):
        lo, hi = tc["noise_snr_db"]
        augment.append(f"pink noise at {lo:g}–{hi:g} dB SNR on {100 * tc.get('noise_prob', 0):.0f} % of utterances")
    if tc.get("vtlp"):
        lo, hi = tc["vtlp"]
        augment.append(f"vocal-tract-length perturbation, warp factor {lo:g}–{hi:g}")
    if tc.get("freq_masks") or tc.get("time_masks"):
        augment.append(f"{tc.get('freq_masks')} frequency masks (≤ {tc.get('freq_mask_bins')} bins) and "
                       f"{tc.get('time_masks')} time masks (≤ {tc.get('time_mask_frames')} frames) per segment")
    if tc.get("mixup_alpha"):
        augment.append(f"mixup α = {tc['mixup_alpha']}")
    if tc.get("label_smoothing"):
        augment.append(f"label smoothing {tc['label_smoothing']}")
    if tc.get("class_balance"):
        augment.append("class-balanced loss")
    if tc.get("corpus_balance"):
        augment.append("corpus-balanced loss")
    seed = tc.get("seed")
    seed = f"seeds {', '.join(map(str, seed))}" if isinstance(seed, list) else f"seed {seed}"
    text = (
        f"{optimiser}, batch {tc.get('batch_size')}, {tc.get('epochs')} epochs, {schedule}, {seed}; "
        f"{sampling}" + (f"; {'; '.join(augment)}" if augment else "; no augmentation") + "."
    )
    if outcome:
        text += (f" Trained on {training.get('device')} in {training.get('precision')}. Final training "
                 f"loss {training.get('final_loss', float('nan')):.3f}, training accuracy "
                 f"{_pct(training.get('final_accuracy'))} %.")
    return text


def _ensemble_text(ensemble: Mapping[str, Any]) -> list[str]:
    """An ensemble's members: what differs between their recipes, and a table of them."""
    members = ensemble.get("members", [])
    configs = [m.get("train_config", {}) for m in members]
    differ = sorted({k for c in configs for k in c if any(json.dumps(c.get(k)) != json.dumps(configs[0].get(k))
                                                         for c in configs)})
    what = ", ".join(f"`{k}`" for k in differ) if differ else "nothing in their recipe"
    out = [f"An ensemble of {len(members)} networks trained with this recipe, differing in {what}; "
           f"scoring averages their {ensemble.get('average', 'segment logits')}, so it runs "
           f"{len(members)} networks per segment.", ""]
    rows = []
    for i, m in enumerate(members, start=1):
        training = m.get("training", {})
        rows.append([i, f"`{m.get('file')}`", f"`{str(m.get('sha256'))[:16]}…`",
                     m.get("train_config", {}).get("seed"), training.get("device"), training.get("precision"),
                     f"{training.get('final_loss', float('nan')):.3f}", f"{_pct(training.get('final_accuracy'))} %"])
    out.append(_table(["member", "file", "sha256", "seed", "device", "precision", "final loss",
                       "training accuracy"], rows))
    return out


def render_evaluation(title: str, m: Mapping[str, Any]) -> str:
    """One ``ser-cli evaluate`` result as a Markdown section (cards and docs/results.md).

    Parameters
    ----------
    title : str
        Section heading (level 3).
    m : mapping
        The evaluation's ``metrics.json`` (:func:`read_evaluation`).

    Returns
    -------
    str
        WA/UA (both D4 averages), per-class recall, confusion matrix, each corpus of a joint
        evaluation on its own, per-fold table, command; partial runs labelled.
    """
    classes = list(m["classes"])
    folds_run = m.get("folds_run") or []
    scope = f"{len(folds_run)} of {m.get('n_folds')} folds" if m.get("partial") else f"all {m.get('n_folds')} folds"
    partial = " **(partial: fewer folds than the protocol)**" if m.get("partial") else ""
    cfg = m.get("configs", {})
    epochs = m.get("epochs")
    out = [f"### {title}", ""]
    out.append(
        f"WA **{_pct(m['wa'])} %**, UA **{_pct(m['ua'])} %** over {m['n_utterances']} test utterances, "
        f"{scope}, {epochs} epochs{partial}; "
        + (m.get("scoring") or f"utterance score = average of segment {m.get('primary_average')} (D4)") + "."
    )
    other = {k: v for k, v in (m.get("by_average") or {}).items() if k != m.get("primary_average")}
    for name, alt in other.items():
        # an ensemble's report (docs/ensemble_screen.py) scores both ways of combining its members
        how = (f"With the members' utterance {'probabilities' if name == 'probs' else name} averaged instead"
               if m.get("ensemble_of") else f"With the other D4 average ({name})")
        out.append(f"{how}: WA {_pct(alt['wa'])} %, UA {_pct(alt['ua'])} %.")
    out += ["", _table(["class", "recall %", "test utterances"],
                       [[c, _pct(m["recalls"].get(c)), (m.get("support") or {}).get(c, "")] for c in classes])]
    out += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
    out.append(_table(["true \\ predicted", *classes],
                      [[c, *row] for c, row in zip(classes, m["confusion"])]))
    for family, cm in (m.get("by_corpus") or {}).items():
        cclasses = list(cm["classes"])
        out += ["", f"**{family}** alone ({len(cclasses)} classes, folds {', '.join(map(str, cm['folds']))}): "
                    f"WA **{_pct(cm['wa'])} %**, UA **{_pct(cm['ua'])} %** over {cm['n']} utterances; "
                    "recalls " + ", ".join(f"{c} {_pct(cm['recalls'].get(c))}" for c in cclasses) + ".", ""]
        out.append(_table(["true \\ predicted", *cclasses], [[c, *row] for c, row in zip(cclasses, cm["confusion"])]))
    per_fold = m.get("per_fold") or []
    if per_fold:
        out += ["", _table(["fold", "test speakers", "utterances", "WA %", "UA %"],
                           [[f.get("fold"), ", ".join(map(str, f.get("speakers", []))), f.get("n"),
                             _pct(f.get("wa")), _pct(f.get("ua"))] for f in per_fold])]
    if m.get("command"):
        out += ["", f"Command: `{m['command']}`"]
    model_cfg = cfg.get("model_config") or {}
    if model_cfg:
        out.append(f"Model settings: head {model_cfg.get('head')}, pool after {model_cfg.get('pool_after')}, "
                   f"widths {model_cfg.get('widths')}.")
    return "\n".join(out)


def render_card(model_path: str | os.PathLike[str],
                evaluations: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Render the Markdown model card of a model file.

    Parameters
    ----------
    model_path : path-like
        A ser-cli TorchScript model file.
    evaluations : mapping of str to dict, optional
        Section title → metrics of an ``ser-cli evaluate`` run (see :func:`read_evaluation`),
        e.g. ``{"Leave-one-speaker-out, same data and recipe": ..., "Cross-corpus: ...": ...}``.

    Returns
    -------
    str
        The card, Markdown.

    Raises
    ------
    ModelFileError
        The model file is missing, corrupt or not a ser-cli model.

    Examples
    --------
    >>> from ser_cli.card import render_card
    >>> print(render_card("model.pt")[:40])  # doctest: +SKIP
    # Model card: model.pt
    """
    from ser_cli.model import read_metadata

    path = Path(model_path)
    meta = read_metadata(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    classes = meta.get("classes", [])
    data = meta.get("data") or {}
    fc, sc = meta.get("feature_config", {}), meta.get("segment_config", {})
    mc, tc = meta.get("model_config", {}), meta.get("train_config", {})
    scoring = meta.get("scoring_config", {})
    training = meta.get("training", {})

    out = [f"# Model card: {path.name}", ""]
    out.append(
        f"Speech emotion recognition, {len(classes)} classes ({', '.join(classes)}), the attention-pooling "
        f"CNN of Li et al. (Interspeech 2018) as implemented by ser-cli {meta.get('package_version')} "
        f"(torch {meta.get('torch_version')}). File size {path.stat().st_size / 1e6:.2f} MB, "
        f"sha256 `{digest[:16]}…`, created {meta.get('created')}."
    )
    out += ["", "## Data", ""]
    corpora = data.get("corpora", {})
    out.append(f"{data.get('n_utterances')} utterances from {len(data.get('speakers', {}))} speakers; "
               f"corpora: {', '.join(f'{k} ({v})' for k, v in corpora.items())}.")
    by_class = data.get("classes", {})
    out += ["", _table(["class", "utterances"], [[c, by_class.get(c, 0)] for c in classes])]
    if meta.get("skipped"):
        out += ["", f"Skipped (unreadable) files: {len(meta['skipped'])}."]
    out += ["", "## Recipe", ""]
    ensemble = meta.get("ensemble")
    if ensemble:
        seeds = [m.get("train_config", {}).get("seed") for m in ensemble.get("members", [])]
        out.append(_recipe_text({**tc, "seed": seeds}, sc, training, outcome=False))
        out += [""] + _ensemble_text(ensemble)
    else:
        out.append(_recipe_text(tc, sc, training))
    deviations = _deviations(meta)
    if deviations:
        out += ["", "Departures from the paper-faithful defaults: " + "; ".join(deviations) + "."]
    commands = [m.get("command") for m in ensemble.get("members", [])] if ensemble else []
    out += ["", "Commands (each member, then the ensemble):" if ensemble else "Command:", "", "```bash",
            *map(str, commands), str(meta.get("command")), "```"]
    out += ["", "## Decisions D1–D5 as used", ""]
    out.append(_table(["decision", "setting"], [
        ["D1 normalisation", f"{fc.get('normalization')} then μ-law, μ = {fc.get('mu')}"],
        ["D2 architecture", f"Conv2–Conv5 widths {mc.get('widths')}, 2×2 max-pool after convs {mc.get('pool_after')}, "
                            f"head {mc.get('head')}"],
        ["D3 attention pooling", f"{mc.get('attention_reduce')} over positions"],
        ["D4 score averaging", f"average of segment {scoring.get('average')}"],
        ["D5 short utterances and tails", f"pad by {sc.get('pad')}; tail segment: {sc.get('tail')}"],
    ]))
    out += ["", "## Evaluation", ""]
    if evaluations:
        for title, metrics in evaluations.items():
            out += [render_evaluation(title, metrics), ""]
    else:
        out += ["No evaluation attached yet: run `ser-cli evaluate` with the same sources and options "
                "and render this card with `ser-cli model-card MODEL --evaluation TITLE=DIR`.", ""]
    out += ["## Limitations", "", _LIMITATIONS.format(band=f"{fc.get('fmax', 4000) / 1000:g}")]
    return "\n".join(out).rstrip() + "\n"
