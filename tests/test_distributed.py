"""Tests of ser_cli.distributed: ``analyze`` on a Dask cluster of two worker processes started by
the tests. Same reports as a local run, byte for byte; a worker killed mid-run loses and
duplicates nothing; finished files are not resubmitted; dask is never imported by ser_cli itself.

Skipped when dask.distributed is not installed (it is in the ``test`` extra). Every test that
uses the cluster runs under a SIGALRM deadline, so a hung cluster fails the test instead of CI.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ser_cli import reports
from ser_cli.analysis import analyze
from ser_cli.errors import ConfigError
from test_merge import REPORTS, write_archive

DEADLINE_S = 120


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded worker processes and its client, closed at the end."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture
def deadline():
    def expired(signum, frame):
        raise TimeoutError(f"test_distributed: over {DEADLINE_S} s (hung cluster?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def local_run(tiny_model, tmp_path_factory):
    """archive/ (as in test_merge) analysed in this process: the reference reports."""
    root = tmp_path_factory.mktemp("dask")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        write_archive(Path("archive"))
        analyze(["archive"], "local", model=tiny_model, progress=False, batch_size=8)
    return root


@pytest.fixture
def here(local_run, monkeypatch):
    monkeypatch.chdir(local_run)
    return local_run


def _journal_paths(out) -> list[str]:
    lines = Path(out, reports.JOURNAL_NAME).read_text().splitlines()
    return [json.loads(x)["key"]["path"] for x in lines]


def _backend(client, **kwargs):
    from ser_cli.distributed import DaskBackend

    return DaskBackend(client, **kwargs)


def test_dask_run_writes_the_local_reports(here, client, tiny_model, deadline, tmp_path):
    seen = []
    result = analyze(["archive"], tmp_path / "out", model=tiny_model, progress=False,
                     batch_size=8, backend=_backend(client, on_result=seen.append))
    for name in REPORTS:
        assert (tmp_path / "out" / name).read_bytes() == Path("local", name).read_bytes(), name
    assert (result.n_ok, result.n_error) == (10, 1)
    assert result.summary["settings"]["backend"] == "dask"
    assert len(seen) == 11
    # the broken file's error names it as given, as in a local run
    assert any(u["error"].startswith("archive/broken.wav: ") for u in result.utterances)

    # resume: finished files are not submitted again; a new file is the only task
    Path("archive/spk1/late.wav").write_bytes(Path("archive/spk1/utt0.wav").read_bytes())
    try:
        seen.clear()
        again = analyze(["archive"], tmp_path / "out", model=tiny_model, progress=False,
                        batch_size=8, backend=_backend(client, on_result=seen.append))
    finally:
        os.unlink("archive/spk1/late.wav")
    assert [r["file"] for r in seen] == ["archive/spk1/late.wav"]
    assert again.summary["this_run"]["resumed_skipped"] == 11
    assert len(_journal_paths(tmp_path / "out")) == 12


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(here, client, tiny_model, deadline,
                                                             tmp_path):
    killed = []

    def kill_a_busy_worker(record):
        if killed:
            return
        pids = client.run(os.getpid)
        busy = [w for w, keys in client.processing().items() if keys] or list(pids)
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append((busy[0], client.processing().get(busy[0], ())))

    result = analyze(["archive"], tmp_path / "out", model=tiny_model, progress=False,
                     batch_size=8, backend=_backend(client, on_result=kill_a_busy_worker,
                                                    window=2))
    assert killed
    paths = _journal_paths(tmp_path / "out")
    assert len(paths) == 11 and not [p for p, n in collections.Counter(paths).items() if n > 1]
    assert result.n_ok == 10
    for name in REPORTS:
        assert (tmp_path / "out" / name).read_bytes() == Path("local", name).read_bytes(), name


def test_importing_ser_cli_does_not_import_dask():
    code = ("import sys, ser_cli, ser_cli.analysis, ser_cli.distributed, ser_cli.merge, "
            "ser_cli.cli; bad = [m for m in ('dask', 'distributed') if m in sys.modules]; "
            "print(*bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_dask_is_a_clear_error(monkeypatch):
    from ser_cli.distributed import DaskBackend

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'ser-cli\[dask\]'"):
        DaskBackend(n_workers=2)


def test_bad_backend_arguments():
    pytest.importorskip("distributed")
    from ser_cli.distributed import DaskBackend

    with pytest.raises(ConfigError, match="either a scheduler address or a number"):
        DaskBackend("tcp://127.0.0.1:1", n_workers=2)
    with pytest.raises(ConfigError, match="dask_workers=0 must be an integer >= 1"):
        DaskBackend(n_workers=0)
