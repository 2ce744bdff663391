"""Tests of ser_cli.sharding: the ``--shard i/n`` assignment (pure functions, no audio)."""

from __future__ import annotations

import hashlib
import random

import pytest

from ser_cli.errors import ConfigError
from ser_cli.sharding import Shard, parse_shard, select, shard_key, shard_of

PATHS = [f"spk{s:02d}/session{k}/utt_{i:03d}.wav" for s in range(8) for k in range(3) for i in range(9)]


def test_parse_shard_is_one_based_and_validated():
    assert parse_shard("3/10") == Shard(3, 10)
    assert parse_shard(" 1/1 ") == Shard(1, 1)
    assert parse_shard((2, 4)) == Shard(2, 4)
    with pytest.raises(ConfigError, match=r"i=0 must be in 1\.\.4 \(shards are 1-based"):
        parse_shard("0/4")
    with pytest.raises(ConfigError, match=r"i=5 must be in 1\.\.4"):
        parse_shard("5/4")
    with pytest.raises(ConfigError, match=r"n=0 must be >= 1"):
        parse_shard("1/0")
    for bad in ("3", "a/b", "1/2/3", ""):
        with pytest.raises(ConfigError, match="not of the form i/n"):
            parse_shard(bad)


def test_known_answer_sha1_of_the_relative_path():
    digest = hashlib.sha1(b"spk01/x.wav").digest()
    assert shard_of("spk01/x.wav", 7) == 1 + int.from_bytes(digest[:8], "big") % 7
    assert [shard_of(p, 5) for p in ("a.wav", "b.wav", "spk00/session0/utt_000.wav")] == [4, 1, 3]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_shards_are_disjoint_cover_everything_and_are_balanced(n):
    chosen = [select(Shard(i, n), ["archive"], [f"archive/{p}" for p in PATHS]) for i in range(1, n + 1)]
    assert sum(len(c) for c in chosen) == len(PATHS)
    assert set().union(*chosen) == {f"archive/{p}" for p in PATHS}
    expected = len(PATHS) / n
    assert all(abs(len(c) - expected) < 4 * expected**0.5 + 2 for c in chosen)


def test_assignment_ignores_scan_order_and_mount_point():
    shuffled = PATHS[:]
    random.Random(0).shuffle(shuffled)
    a = select("2/5", ["/mnt/a/archive"], [f"/mnt/a/archive/{p}" for p in PATHS])
    b = select("2/5", ["data/archive/"], [f"data/archive/{p}" for p in shuffled])
    assert {x.removeprefix("/mnt/a/archive/") for x in a} == {x.removeprefix("data/archive/") for x in b}


def test_shard_key_relative_to_the_first_root_and_explicit_files_by_name():
    assert shard_key("in/sub/a.wav", ["other", "in"]) == "sub/a.wav"
    assert shard_key("in/sub/a.wav", ["in/", "in/sub"]) == "sub/a.wav"
    assert shard_key("./a.wav", ["."]) == "a.wav"
    assert shard_key("/x/rec/b.flac", ["in", "/x/rec/b.flac"]) == "b.flac"
    assert shard_key("missing.wav", ["missing.wav"]) == "missing.wav"
