"""The ``ser-cli`` command line: click commands only.

Each command parses options, builds configs, calls one public function of the package and
renders the result. Reports go to files, progress and messages to stderr.

Exit status (documented in README.md, "Exit status"):

* 0 -- every input was processed;
* 1 -- a fatal error (bad model file, unreadable corpus, ...): nothing useful was produced;
* 2 -- usage error (unknown option, missing argument), as click reports it;
* 3 -- the run finished but some input files failed; each has an error row in the reports.
"""

from __future__ import annotations

import functools
import sys

import click

from ser_cli import __version__
from ser_cli.errors import SerError

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


def _ser_errors(func):
    """Turn a ``SerError`` into a one-line click error (no traceback), exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SerError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def device_options(func):
    """``--device`` and ``--precision``, shared by every command that runs the model."""
    func = click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "bf16"]),
        default="auto",
        show_default=True,
        help="Arithmetic of the model. auto: bf16 on GPUs and on CPUs with native bf16 "
        "(AMX/AVX512-BF16), fp32 elsewhere.",
    )(func)
    func = click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto, cpu, cuda or cuda:N.",
    )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ser-cli")
def main() -> None:
    """Speech emotion recognition over audio archives.

    \b
    Example:
      ser-cli analyze recordings/ -o ser-out
    """


@main.group()
def bench() -> None:
    """Benchmarks that time ser-cli against the libraries people use today.

    \b
    Example:
      ser-cli bench features --seconds 60 --threads 1
    """


# --- commands: audio ingestion (formats) -------------------------------------------------


@main.command()
@_ser_errors
def formats() -> None:
    """List the audio formats and file extensions this installation decodes.

    Directories are scanned for the extensions listed (case-insensitive); a file named
    explicitly is always tried.

    \b
    Example:
      ser-cli formats
    """
    from ser_cli.audio import AUDIO_EXTENSIONS, supported_formats

    for name, description in sorted(supported_formats().items()):
        click.echo(f"{name:<8} {description}")
    click.echo("extensions scanned: " + " ".join(sorted(AUDIO_EXTENSIONS)))


# --- commands: features benchmark (bench features) ---------------------------------------


@bench.command("features")
@click.option("--seconds", type=click.FloatRange(min=0.05), default=60.0, show_default=True,
              help="Length of the synthetic speech-like test signal, in seconds.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads for ser-cli and for peers that take a thread count.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@_ser_errors
def bench_features_command(seconds: float, threads: int, as_json: bool) -> None:
    """Time the spectrogram front-end against numpy, scipy, pyfftw, librosa and torch.

    \b
    Example:
      ser-cli bench features --seconds 600 --threads 1
    """
    import json

    from ser_cli.bench import bench_features, format_features

    report = bench_features(seconds=seconds, threads=threads)
    click.echo(json.dumps(report, indent=2) if as_json else format_features(report))


# --- commands: training and evaluation (train, evaluate, model-info) ---------------------


def _int_list(text: str | None, name: str) -> tuple[int, ...] | None:
    """``"1,2,3"`` -> (1, 2, 3); ``"none"`` -> (); None -> None."""
    if text is None:
        return None
    if text.strip().lower() in ("none", "off", ""):
        return ()
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=name) from exc


def _shape_list(text: str) -> tuple[tuple[int, int], ...]:
    """``"10x2,2x8"`` -> ((10, 2), (2, 8))."""
    try:
        return tuple(tuple(int(v) for v in item.lower().split("x", 1)) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a list like 10x2,2x8", param_hint="--conv1") from exc


def _float_list(text: str | None, name: str) -> tuple[float, ...] | None:
    """``"0.9,1.0"`` -> (0.9, 1.0); ``"off"`` -> (); None -> None."""
    if text is None:
        return None
    if text.strip().lower() in ("off", "none", ""):
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers (or off)", param_hint=name) from exc


def _folds_option(ctx, param, value):
    """``--folds``: ``K`` or ``family=K,family=K``."""
    if value is None:
        return None
    if value.strip().lower() == "corpus":
        return "corpus"
    try:
        if "=" not in value:
            k = int(value)
            if k < 2:
                raise ValueError
            return k
        folds = {}
        for item in value.split(","):
            family, _, k = item.partition("=")
            if not family.strip() or int(k) < 2:
                raise ValueError
            folds[family.strip()] = int(k)
        return folds
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a fold count >= 2, a list like emodb=10,ravdess=6, or 'corpus'"
        ) from None


def training_options(func):
    """Options shared by ``train`` and ``evaluate``: data, recipe, architecture, scoring."""
    options = [
        click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True)),
        click.option("--format", "corpus_format", default="auto", show_default=True,
                     type=click.Choice(["auto", "manifest", "emodb", "ravdess", "iemocap"]),
                     help="Corpus format of every SOURCE (auto: detect each)."),
        click.option("--classes", default=None,
                     help="Comma-separated classes in output order, e.g. neutral,happy,angry,sad "
                     "(others are dropped). Default: every label in the data."),
        click.option("--exclude-speakers", default=None, metavar="SPK,SPK,...",
                     help="Leave these speakers out entirely (e.g. an outer fold's test speakers "
                     "while choosing settings on inner folds); ids as in the data, emodb:03 when "
                     "corpora mix."),
        click.option("--recipe", type=click.Choice(["ser", "paper"]), default="ser", show_default=True,
                     help="Training recipe: 'paper' is the paper's exactly (50 epochs, SGD steps, "
                     "every 2 s segment, pools after Conv2-3); 'ser' adds what measured better on "
                     "small corpora (docs/results.md). Options below override either."),
        click.option("--head", default="attention", show_default=True,
                     type=click.Choice(["attention", "gap", "bilinear"]), help="Class-score head."),
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Epochs (paper 50, ser 48 with 2 crops per utterance each)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Segments per step (64)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Peak learning rate (paper 0.05, ser 0.002)."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None,
                     help="paper: SGD, Nesterov momentum 0.9; ser: AdamW."),
        click.option("--lr-schedule", type=click.Choice(["step", "onecycle"]), default=None,
                     help="paper: /10 at 40, 60, 80 % of the epochs; ser: 10 % warm-up then cosine."),
        click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
                     help="paper 1e-4 (L2); ser 0.05 (decoupled, AdamW)."),
        click.option("--sampling", type=click.Choice(["segments", "crops"]), default=None,
                     help="Each epoch: every 2 s segment (paper) or --crops random 2 s windows per utterance (ser)."),
        click.option("--crops", "crops_per_utterance", type=click.IntRange(min=1), default=None,
                     help="Random windows per utterance per epoch with --sampling crops (ser 2)."),
        click.option("--speed", "speed_factors", default=None, metavar="F,F,...|off",
                     help="Speed perturbation factors drawn per utterance and epoch (ser 0.9,1.0,1.1)."),
        click.option("--noise-snr", "noise_snr_db", default=None, metavar="LOW,HIGH|off",
                     help="Add pink noise at an SNR in [LOW, HIGH] dB to half the utterances (off)."),
        click.option("--vtlp", default=None, metavar="LOW,HIGH|off",
                     help="Vocal-tract-length perturbation: warp each utterance's frequency axis by a "
                     "factor drawn from [LOW, HIGH], e.g. 0.9,1.1 (off)."),
        click.option("--tempo", "tempo_factors", default=None, metavar="F,F,...|off",
                     help="Tempo perturbation factors drawn per utterance and epoch, pitch kept "
                     "(the spectrogram's time axis stretched), e.g. 0.9,1.0,1.1 (off)."),
        click.option("--freq-masks", type=click.IntRange(min=0), default=None,
                     help="SpecAugment frequency masks per segment, up to 40 bins each (ser 2)."),
        click.option("--time-masks", type=click.IntRange(min=0), default=None,
                     help="SpecAugment time masks per segment, up to 30 frames each (ser 2)."),
        click.option("--mixup", "mixup_alpha", type=click.FloatRange(min=0), default=None,
                     help="Mixup Beta(alpha, alpha); 0 is off (ser 0.2)."),
        click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
                     help="Cross-entropy label smoothing (ser 0.1)."),
        click.option("--ema", "ema_decay", type=click.FloatRange(0, 1, max_open=True), default=None,
                     help="Ship an exponential moving average of the weights with this decay per "
                     "step, e.g. 0.995 (0: the last step's weights, the paper's and ser's)."),
        click.option("--class-balance/--no-class-balance", default=None,
                     help="Weight the loss by inverse class frequency (ser: on)."),
        click.option("--corpus-balance/--no-corpus-balance", default=None,
                     help="Weight the loss by inverse corpus frequency (ser: on)."),
        click.option("--class-balance-scope", type=click.Choice(["pooled", "corpus"]), default=None,
                     help="Count class frequencies for --class-balance over all training "
                     "utterances (pooled, ser's) or within each corpus (corpus: each corpus's "
                     "classes weigh the same, as its UA counts them)."),
        click.option("--normalization", type=click.Choice(["max", "minmax", "utterance"]),
                     default=None,
                     help="D1 scaling before mu-law: per segment (max, minmax) or by the "
                     "utterance's maximum (utterance; needed for --shared-trunk). "
                     "Default: FeatureConfig's."),
        click.option("--fmax", type=click.Choice(["4000", "8000"]), default=None,
                     help="Upper band edge in Hz: 4000 (paper: 0-4 kHz, 10 Hz per row) or 8000 "
                     "(0-8 kHz, 20 Hz per row; the same 400 x 200 input). Default: FeatureConfig's."),
        click.option("--pool-after", default=None,
                     help="D2: conv indices (1-5) followed by a 2x2 max-pool (paper 2,3; ser 1,2,3, ~3x faster)."),
        click.option("--widths", default="32,48,64,80", show_default=True,
                     help="D2: channels of Conv2-Conv5 ('none': Conv1 alone, as in the paper's "
                     "filter-shape study)."),
        click.option("--conv1", "conv1_shapes", default="10x2,2x8", show_default=True,
                     metavar="HxW,...", help="Conv1 groups' kernels, frequency x time."),
        click.option("--conv1-channels", default="8,8", show_default=True,
                     help="Filters per Conv1 group."),
        click.option("--attention-reduce", type=click.Choice(["sum", "mean"]), default="sum",
                     show_default=True, help="D3: sum or mean over positions in attention pooling."),
        click.option("--gap-batchnorm", is_flag=True, default=False,
                     help="--head gap: batch-normalise the pooled features before the linear "
                     "layer (what the filter-shape study's Conv1-alone network needs to train)."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
                     show_default=True, help="Training only: dropout on the trunk's output map "
                     "before the head (0: none, the paper's and ser's)."),
        click.option("--average", type=click.Choice(["logits", "probs"]), default="logits",
                     show_default=True, help="D4: average segment logits or probabilities."),
        click.option("--pad", type=click.Choice(["repeat", "zeros"]), default=None,
                     help="D5: padding of utterances shorter than 2 s (default: SegmentConfig's)."),
        click.option("--tail", type=click.Choice(["end", "drop"]), default=None,
                     help="D5: add an end-aligned segment over the tail (default: SegmentConfig's)."),
        click.option("--score-hop", "score_hop", type=click.IntRange(min=1), default=None,
                     metavar="FRAMES",
                     help="Frames between scored segments, 10 ms each (default: SegmentConfig's, "
                     "40 = 0.4 s); a smaller hop averages more shifted segmentations. D4, "
                     "--score-hop and (crop recipes) --tail only change scoring: rerunning a "
                     "finished evaluation with them rescores its trained models."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Feature cache (default $SER_CACHE or ~/.cache/ser-cli)."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="CPU threads for torch (default: one per core)."),
        click.option("--quiet", is_flag=True, help="No progress on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return device_options(func)


def _training_setup(kw: dict) -> dict:
    """Read the corpora and build every config from the shared training options."""
    import dataclasses

    from ser_cli.corpora import read_corpus, select_classes
    from ser_cli.features import FeatureConfig
    from ser_cli.model import ModelConfig
    from ser_cli.scoring import ScoringConfig
    from ser_cli.segmentation import SegmentConfig
    from ser_cli.training import recipe_configs

    utterances = read_corpus(list(kw["sources"]), format=kw["corpus_format"])
    classes = [c for c in kw["classes"].split(",")] if kw["classes"] else None
    if kw["exclude_speakers"]:
        excluded = {v.strip() for v in kw["exclude_speakers"].split(",") if v.strip()}
        unknown = sorted(excluded - {u.speaker for u in utterances})
        if unknown:
            raise click.BadParameter(
                f"speaker(s) {', '.join(unknown)} not in the data (ids look like "
                f"{utterances[0].speaker!r})", param_hint="--exclude-speakers",
            )
        utterances = [u for u in utterances if u.speaker not in excluded]
    utterances, classes = select_classes(utterances, classes)
    train_config, overrides = recipe_configs(
        kw["recipe"],
        **{name: kw[name] for name in ("epochs", "batch_size", "lr", "seed", "optimizer",
                                       "lr_schedule", "weight_decay", "sampling",
                                       "crops_per_utterance", "freq_masks", "time_masks",
                                       "mixup_alpha", "label_smoothing", "class_balance",
                                       "corpus_balance", "ema_decay", "class_balance_scope")},
        speed_factors=_float_list(kw["speed_factors"], "--speed"),
        noise_snr_db=_float_list(kw["noise_snr_db"], "--noise-snr"),
        vtlp=_float_list(kw["vtlp"], "--vtlp"),
        tempo_factors=_float_list(kw["tempo_factors"], "--tempo"),
    )
    model_overrides = overrides["model"]
    if kw["pool_after"] is not None:
        model_overrides["pool_after"] = _int_list(kw["pool_after"], "--pool-after")
    feature_config = FeatureConfig(**overrides["feature"])
    if kw["normalization"]:
        feature_config = dataclasses.replace(feature_config, normalization=kw["normalization"])
    if kw["fmax"]:
        feature_config = dataclasses.replace(feature_config, fmax=int(kw["fmax"]))
    segment_config = SegmentConfig()
    if kw["pad"]:
        segment_config = dataclasses.replace(segment_config, pad=kw["pad"])
    if kw["tail"]:
        segment_config = dataclasses.replace(segment_config, tail=kw["tail"])
    if kw["score_hop"]:
        segment_config = dataclasses.replace(segment_config, score_hop_frames=kw["score_hop"])
    return {
        "utterances": utterances,
        "classes": classes,
        "feature_config": feature_config,
        "segment_config": segment_config,
        "model_config": ModelConfig(
            n_classes=len(classes),
            head=kw["head"],
            widths=_int_list(kw["widths"], "--widths"),
            conv1_shapes=_shape_list(kw["conv1_shapes"]),
            conv1_channels=_int_list(kw["conv1_channels"], "--conv1-channels"),
            attention_reduce=kw["attention_reduce"],
            gap_batchnorm=kw["gap_batchnorm"],
            dropout=kw["dropout"],
            **model_overrides,
        ),
        "train_config": train_config,
        "scoring_config": ScoringConfig(average=kw["average"]),
        "cache_dir": kw["cache_dir"],
        "device": kw["device"],
        "precision": kw["precision"],
        "threads": kw["threads"],
        "progress": not kw["quiet"],
    }


@main.command()
@training_options
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (TorchScript with embedded settings).")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoints, for resuming (default: MODEL.work).")
@_ser_errors
def train(output: str, work_dir: str | None, **kw) -> None:
    """Train the attention-pooling CNN on labelled corpora and write a model file.

    SOURCE is a corpus folder (manifest.csv, IEMOCAP Session folders, EMO-DB or RAVDESS file
    names) or a manifest CSV (path,speaker,label). Several sources combine; EMO-DB copies of one
    recording are used once (first source wins). An interrupted run resumes from its last epoch.
    MODEL.train.json records the settings and the per-epoch loss.

    \b
    Example:
      ser-cli train data/emodb_original_subset data/emodb --classes neutral,happy,angry,sad -o emodb.pt
    """
    import shlex

    from ser_cli.training import train as run_train

    setup = _training_setup(kw)
    result = run_train(
        setup.pop("utterances"), output, work_dir=work_dir, command=shlex.join(sys.argv), **setup
    )
    last = result.history[-1] if result.history else {}
    click.echo(
        f"{result.model_path}: {len(result.classes)} classes ({', '.join(result.classes)}), "
        f"{result.n_utterances} utterances, {result.n_segments} segments, "
        f"final loss {last.get('loss', float('nan')):.4f}, train acc {last.get('accuracy', float('nan')):.3f}"
    )
    if result.skipped:
        click.echo(f"{len(result.skipped)} file(s) skipped, listed in {result.report_path}", err=True)
        sys.exit(EXIT_PARTIAL)


@main.command()
@training_options
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.csv, metrics.json, metrics.csv, confusion.png.")
@click.option("--folds", default=None, callback=_folds_option, metavar="K|FAMILY=K,...|corpus",
              help="Group the sorted speakers into K contiguous folds (default: one per speaker), "
              "or per corpus: emodb=10,ravdess=6 (fold i holds out group i of each corpus), or "
              "'corpus': cross-corpus, one fold per corpus (train on the others).")
@click.option("--only-folds", default=None,
              help="Comma-separated 1-based folds to run (a partial, screening result).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Folds trained at once, one process each (--threads per fold, default "
              "cores/JOBS); on 2 cores 2 jobs train about 1.9x faster than 1.")
@click.option("--shared-trunk", is_flag=True,
              help="Score test utterances with one trunk pass per utterance (needs "
              "--normalization utterance); rescoring a finished evaluation reuses its models.")
@click.option("--reuse-models", type=click.Path(file_okay=False, exists=True), default=None,
              metavar="DIR",
              help="Score with the fold models of the finished evaluation in DIR (same data, "
              "folds and training settings) instead of training, e.g. with another --average, "
              "--score-hop, --tail or --shared-trunk; DIR is left as it is.")
@_ser_errors
def evaluate(output: str, folds, only_folds: str | None, jobs: int, shared_trunk: bool,
             reuse_models: str | None, **kw) -> None:
    """Leave-one-speaker-out evaluation: WA, UA, per-class recall, confusion.

    Each fold trains on the other speakers with the same recipe as 'train' and scores its
    held-out speakers' utterances (2 s segments every 0.4 s, averaged per D4). Predictions of
    all folds are pooled. Finished folds and epochs are kept, so a rerun resumes.

    \b
    Example:
      ser-cli evaluate data/emodb --classes neutral,happy,angry,sad --folds 5 -o eval-emodb
    """
    import shlex

    from ser_cli.evaluation import evaluate as run_evaluate

    setup = _training_setup(kw)
    result = run_evaluate(
        setup.pop("utterances"),
        output,
        folds=folds,
        only_folds=_int_list(only_folds, "--only-folds"),
        command=shlex.join(sys.argv),
        shared_trunk=shared_trunk,
        jobs=jobs,
        reuse_models=reuse_models,
        **setup,
    )
    tag = " (partial: only some folds)" if result.partial else ""
    click.echo(
        f"{output}: WA {100 * result.wa:.2f} %  UA {100 * result.ua:.2f} %  over "
        f"{result.n_utterances} utterances, {len(result.folds_run)} fold(s){tag}"
    )
    for family, m in result.metrics.get("by_corpus", {}).items():
        click.echo(
            f"  {family}: WA {100 * m['wa']:.2f} %  UA {100 * m['ua']:.2f} %  over {m['n']} "
            f"utterances, {len(m['classes'])} classes, folds {','.join(map(str, m['folds']))}"
        )
    if result.skipped:
        click.echo(f"{len(result.skipped)} file(s) skipped, listed in metrics.json", err=True)
        sys.exit(EXIT_PARTIAL)


@main.command("model-info")
@click.argument("model", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the whole metadata as JSON.")
@_ser_errors
def model_info(model: str | None, as_json: bool) -> None:
    """Show a model file's classes, settings and evaluation metrics.

    Without MODEL, the bundled model (ser_cli/models/default.pt) is shown. A model card
    (MODEL with the extension .md) beside the file is printed too.

    \b
    Example:
      ser-cli model-info emodb.pt
    """
    import json
    from pathlib import Path

    from ser_cli.model import read_metadata

    if model is None:
        from ser_cli.analysis import default_model_path

        model = str(default_model_path())
    meta = read_metadata(model)
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True))
        return
    click.echo(f"model: {model}")
    click.echo(f"classes: {', '.join(meta.get('classes', []))}")
    for key in ("package_version", "torch_version", "created", "command"):
        if key in meta:
            click.echo(f"{key}: {meta[key]}")
    for key in ("feature_config", "segment_config", "model_config", "scoring_config", "train_config"):
        if key in meta:
            values = ", ".join(f"{k}={v}" for k, v in meta[key].items())
            click.echo(f"{key}: {values}")
    data = meta.get("data") or {}
    if data:
        click.echo(f"data: {data.get('n_utterances')} utterances; corpora {data.get('corpora')}; "
                   f"classes {data.get('classes')}")
    for i, member in enumerate((meta.get("ensemble") or {}).get("members", []), start=1):
        click.echo(f"member {i}: {member.get('file')} (sha256 {str(member.get('sha256'))[:16]}…, "
                   f"seed {member.get('train_config', {}).get('seed')}): {member.get('command')}")
    metrics = meta.get("metrics")
    if metrics:
        click.echo("metrics: " + json.dumps(metrics, sort_keys=True))
    card = Path(model).with_suffix(".md")
    if card.is_file():
        click.echo("")
        click.echo(card.read_text())

@main.command("model-card")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--evaluation", "evaluations", multiple=True, metavar="TITLE=DIR",
              help="An 'ser-cli evaluate' output folder to report, with its section title; repeatable.")
@click.option("--attach", is_flag=True,
              help="Also store the evaluations' metrics inside the model file (key 'metrics').")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Card file to write (default: MODEL with the extension .md).")
@_ser_errors
def model_card(model: str, evaluations: tuple[str, ...], attach: bool, output: str | None) -> None:
    """Write a model's Markdown card from what the model file and its evaluations record.

    Every number in the card comes from the model file or an evaluation's metrics.json.

    \b
    Example:
      ser-cli model-card emodb4.pt --evaluation "Leave-one-speaker-out=eval-emodb4" --attach
    """
    from pathlib import Path

    from ser_cli.card import read_evaluation, render_card
    from ser_cli.model import update_metadata

    parsed = {}
    for item in evaluations:
        title, sep, folder = item.partition("=")
        if not sep or not title or not folder:
            raise click.BadParameter(f"{item!r} is not TITLE=DIR", param_hint="--evaluation")
        parsed[title] = read_evaluation(folder)
    if attach and parsed:
        keep = ("wa", "ua", "recalls", "confusion", "classes", "n_folds", "folds_run", "partial",
                "epochs", "n_utterances", "command")
        update_metadata(model, {"metrics": {t: {k: m.get(k) for k in keep} for t, m in parsed.items()}})
    target = Path(output) if output else Path(model).with_suffix(".md")
    target.write_text(render_card(model, parsed))
    click.echo(f"wrote {target}", err=True)


@main.command("ensemble")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The ensemble's model file to write.")
@_ser_errors
def ensemble_command(models: tuple[str, ...], output: str) -> None:
    """Combine trained models of one configuration into one model that averages them.

    The members (two or more 'ser-cli train' outputs with the same classes, features,
    segmentation and network, e.g. different --seed) are stored in one TorchScript file whose
    segment logits are the mean of theirs; 'analyze', 'model-info' and 'model-card' read it
    like any model. Scoring costs one network per member.

    \b
    Example:
      ser-cli ensemble seed0.pt seed1.pt -o ensemble.pt
    """
    import shlex

    from ser_cli.model import ensemble_models

    path = ensemble_models(list(models), output, command=shlex.join(sys.argv))
    click.echo(f"wrote {path} ({len(models)} members)", err=True)


# --- commands: analyze, merge, bench analyze ---------------------------------------------


def _batch_done(ctx: click.Context, result, quiet: bool, detail: str) -> None:
    """End 'analyze' or 'merge': one summary line on stderr (unless ``quiet``), then exit
    status 3 if any file has an error row."""
    if not quiet:
        click.echo(f"{result.n_ok} files ok, {result.n_error} failed{detail}; "
                   f"reports in {result.out}", err=True)
    if result.n_error:
        ctx.exit(EXIT_PARTIAL)


def _shard_option(ctx, param, value):
    """``--shard I/N`` -> Shard, or a usage error (exit 2) naming the option."""
    if value is None:
        return None
    from ser_cli.errors import ConfigError
    from ser_cli.sharding import parse_shard

    try:
        return parse_shard(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--out", default="ser-out", show_default=True,
              type=click.Path(file_okay=False),
              help="Output folder for the reports (created; re-using it resumes).")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Model file written by 'ser-cli train'. Default: the bundled model.")
@device_options
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Segments per model call, packed across files (default: 8 on the CPU, "
              "fastest there; 32 on CUDA).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Decoder threads. Default: min(2, usable cores).")
@click.option("--overwrite", is_flag=True,
              help="Delete the reports and journal in OUT and start afresh.")
@click.option("--plot", is_flag=True,
              help="Also write OUT/plots/<file>.png: class scores over time (needs matplotlib).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr.")
@click.option("--shared-trunk", is_flag=True,
              help="Run the convolutions once per file and the head per 2 s window (~4-5x "
              "fewer FLOPs); only for models trained with --normalization utterance.")
@click.option("--shard", default=None, metavar="I/N", callback=_shard_option,
              help="Score only shard I of N (1-based, e.g. $SLURM_ARRAY_TASK_ID/N): a stable "
              "1/N of the files by a hash of their path relative to the input; join the "
              "shards' OUTs with 'ser-cli merge'.")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local",
              show_default=True,
              help="local: this process. dask: one task per file on a Dask cluster "
              "(pip install 'ser-cli[dask]'); see --scheduler and --dask-workers.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="With --backend dask: a running scheduler (tcp://host:8786 or a "
              "scheduler-file .json). Default: start a local cluster.")
@click.option("--dask-workers", type=click.IntRange(min=1), default=None,
              help="With --backend dask and no --scheduler: worker processes of the local "
              "cluster. Default: one per usable core.")
@click.pass_context
@_ser_errors
def analyze_command(ctx: click.Context, paths, out, model, device, precision, batch_size, jobs,
                    overwrite, plot, quiet, shard, backend, scheduler, dask_workers,
                    shared_trunk) -> None:
    """Score every audio file in PATHS (files and folders) and write reports to OUT.

    Folders are walked recursively; files with an audio extension (see 'ser-cli formats') are
    scored, others are counted as skipped. OUT receives utterances.csv/.json (one row per
    file: file, duration_s, n_segments, label, one probability column per class, status,
    error), segments.csv/.json/.jsonl (one row per 2 s segment, every 0.4 s: file, index,
    start_s, end_s, label, probabilities) and summary.json. Paths are written as given.

    A file that cannot be decoded gets an error row and the run goes on. Re-running the same
    command resumes: finished files (same path, size, mtime) are skipped, and an interrupted
    run (Ctrl-C, kill) loses only the files in flight. A second run on the same OUT at the
    same time, or a run with another model or precision, is refused (use --overwrite).

    \b
    Exit status: 0 every file scored; 3 some files failed (see the error column);
    1 fatal (bad model, OUT in use or from another model); 2 usage error;
    130 interrupted (re-run the same command to resume).

    \b
    Example:
      ser-cli analyze recordings/ more.wav -o ser-out --jobs 2
      ser-cli analyze archive/ --shard 3/10 -o out/shard-3
      ser-cli analyze archive/ --backend dask --scheduler tcp://head:8786 -o out
    """
    from ser_cli.analysis import analyze

    if backend != "dask" and (scheduler is not None or dask_workers is not None):
        raise click.UsageError("--scheduler and --dask-workers need --backend dask")
    engine = None
    if backend == "dask":
        from ser_cli.distributed import DaskBackend

        engine = DaskBackend(scheduler, n_workers=dask_workers)
    try:
        result = analyze(
            paths,
            out,
            model=model,
            device=device,
            batch_size=batch_size,
            jobs=jobs,
            precision=precision,
            overwrite=overwrite,
            plot=plot,
            progress=not quiet,
            shard=shard,
            backend=engine,
            shared_trunk=shared_trunk,
        )
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted: finished files are recorded in {out} and the reports cover them; "
            "run the same command again to resume.",
            err=True,
        )
        ctx.exit(130)
    run = result.summary["this_run"]
    _batch_done(ctx, result, quiet,
                f" ({run['scored']} scored now, {run['resumed_skipped']} already done, "
                f"{result.summary['files']['skipped_non_audio']} non-audio skipped)")


@main.command("merge")
@click.argument("inputs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the merged journal and reports (created).")
@click.option("--overwrite", is_flag=True, help="Replace reports already in OUT.")
@click.option("--partial", is_flag=True,
              help="Merge even if some shards of N are missing (summary.json lists those merged).")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
@click.pass_context
@_ser_errors
def merge_command(ctx: click.Context, inputs, out, overwrite, partial, quiet) -> None:
    """Join the OUT folders of several 'analyze' runs (e.g. --shard 1/N .. N/N) into one.

    Reads each input's journal and renders utterances/segments CSV, JSON and JSONL exactly as
    one run over all the files would have (rows sorted by file, then segment index);
    summary.json differs only in timing and command fields and lists the inputs. Refuses
    inputs written with another model, classes, precision or front-end settings (naming the
    folder and field), two different records of one file, and missing or repeated shards.

    \b
    Exit status: 0 merged, every file ok; 3 merged, some files have error rows; 1 refused.

    \b
    Example:
      ser-cli merge out/shard-1 out/shard-2 out/shard-3 -o out/all
    """
    from ser_cli.merge import merge

    result = merge(inputs, out, overwrite=overwrite, allow_partial=partial)
    _batch_done(ctx, result, quiet, f", from {len(inputs)} folder(s)")


@bench.command("analyze")
@click.option("--data", type=click.Path(exists=True, file_okay=False), envvar="SER_DATA",
              default=None,
              help="Folder of real speech to time on (or $SER_DATA). Default: synthetic files.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=300.0, show_default=True,
              help="Audio to time: files are taken in order until this much is reached.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Model file. Default: the bundled model, else a randomly initialised "
              "paper-sized CNN (speed does not depend on the weights).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU cores torch may use (both pipelines).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Segments per model call for analyze (default: analyze's, 8 on the CPU).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Decoder threads for analyze. Default: min(2, usable cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@_ser_errors
def bench_analyze_command(data, seconds, model, threads, batch_size, jobs, as_json) -> None:
    """Time 'analyze' end to end (x real time) against a naive librosa + numpy pipeline.

    Both score the same files with the same weights in fp32 on the CPU: analyze with its
    pipeline, the naive one file at a time (librosa.load, numpy STFT, one batch per file).
    Outputs are checked to agree before the times are reported.

    \b
    Example:
      ser-cli bench analyze --data ../shared/data/emodb_original_subset/wav --seconds 120
    """
    import json

    from ser_cli.bench import bench_analyze, format_bench_analyze

    report = bench_analyze(data=data, seconds=seconds, model=model, threads=threads,
                           batch_size=batch_size, jobs=jobs)
    click.echo(json.dumps(report, indent=2) if as_json else format_bench_analyze(report))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
