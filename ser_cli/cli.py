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

# --- commands: analyze, merge, bench analyze ---------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
