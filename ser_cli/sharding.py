"""Deterministic sharding of an archive: ``ser-cli analyze ... --shard i/n``.

A file belongs to shard ``1 + h mod n`` where ``h`` is the first 8 bytes (big-endian) of the
SHA-1 of its *shard key*: its path relative to the input argument it was found under, with
``/`` separators, UTF-8 encoded (undecodable bytes kept via ``surrogateescape``). A file named
explicitly on the command line has its own name (the last component) as its key. So:

* the assignment does not depend on scan order, on the number of files, on the machine or on
  where the archive is mounted: ``/mnt/a/archive`` on one node and ``/data/archive`` on another
  give every file the same shard, as long as both pass the archive root (or the same
  sub-folder) as the input;
* the shards of one ``n`` are disjoint and together cover every file;
* inputs that do not exist (error rows) are sharded the same way, by their name.

Shard numbers are 1-based, ``1 <= i <= n``, the convention of ``sbatch --array=1-N``
(``$SLURM_ARRAY_TASK_ID``), PBS, LSF and SGE job arrays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ser_cli.errors import ConfigError

__all__ = ["Shard", "parse_shard", "shard_key", "shard_of", "select"]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: ``1 <= index <= count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"shard {name}={value!r} must be an integer")
        if self.count < 1:
            raise ConfigError(f"shard '{self}': the number of shards n={self.count} must be >= 1")
        if not 1 <= self.index <= self.count:
            raise ConfigError(
                f"shard '{self}': i={self.index} must be in 1..{self.count} (shards are "
                "1-based, like $SLURM_ARRAY_TASK_ID with sbatch --array=1-N)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | Shard | tuple[int, int]) -> Shard:
    """Parse ``"i/n"`` (1-based) into a :class:`Shard`.

    Parameters
    ----------
    text : str, Shard or (int, int)
        ``"3/10"``; a :class:`Shard` or an ``(i, n)`` tuple is taken as is.

    Returns
    -------
    Shard

    Raises
    ------
    ConfigError
        Not of the form ``i/n`` with integers, ``n < 1``, or ``i`` outside ``1..n``.

    Examples
    --------
    >>> parse_shard("3/10")
    Shard(index=3, count=10)
    """
    if isinstance(text, Shard):
        return text
    if isinstance(text, tuple) and len(text) == 2:
        return Shard(*text)
    parts = str(text).strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        index, count = int(parts[0]), int(parts[1])
    except ValueError as exc:
        raise ConfigError(
            f"shard={text!r} is not of the form i/n with integers, e.g. 3/10"
        ) from exc
    return Shard(index, count)


def shard_key(path: str, roots: Sequence[str]) -> str:
    """The shard key of ``path``: relative to the first of ``roots`` it lies in, ``/``-separated.

    Parameters
    ----------
    path : str
        A path as :func:`ser_cli.audio.scan` yields it (the root as given, joined with the
        names below it).
    roots : sequence of str
        The inputs as given, in order (the first root that contains ``path`` is the one scan
        found it under, because scan walks the inputs in order and yields a file once).

    Returns
    -------
    str
        The relative path; a path that is itself one of ``roots``, or lies under none, gives
        its last component.

    Examples
    --------
    >>> shard_key("/mnt/a/archive/spk1/x.wav", ["/mnt/a/archive"])
    'spk1/x.wav'
    >>> shard_key("recs/x.wav", ["recs/x.wav"])
    'x.wav'
    """
    for root in roots:
        if path == root:
            break
        prefix = os.path.join(root, "")
        if path.startswith(prefix) and len(path) > len(prefix):
            return path[len(prefix):].replace(os.sep, "/")
    return os.path.basename(os.path.normpath(path)) or path


def shard_of(key: str, count: int) -> int:
    """The 1-based shard (of ``count``) that the shard key ``key`` belongs to.

    >>> shard_of("spk1/x.wav", 1)
    1
    """
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def select(shard: Shard | str, roots: Iterable[str | os.PathLike[str]], displays: Iterable[str]) -> set[str]:
    """The paths among ``displays`` (found under ``roots``) that belong to ``shard``.

    Examples
    --------
    >>> sorted(select("1/1", ["in"], ["in/a.wav", "in/b.wav"]))
    ['in/a.wav', 'in/b.wav']
    """
    shard = parse_shard(shard)
    if isinstance(roots, (str, bytes, os.PathLike)):
        roots = [roots]
    given = [os.fspath(r) for r in roots]
    return {
        d for d in displays if shard_of(shard_key(d, given), shard.count) == shard.index
    }
