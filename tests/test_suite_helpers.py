"""The suite's own housekeeping (tests/conftest.py)."""

import os

from conftest import prune_compilation_cache


def write_entries(directory, sizes):
    """Files ``entry0`` ... of the given sizes, ``entry0`` the oldest."""
    for index, size in enumerate(sizes):
        path = directory / f"entry{index}"
        path.write_bytes(b"x" * size)
        os.utime(path, (1_000_000 + index, 1_000_000 + index))


def test_prune_deletes_the_oldest_entries_until_under_the_bound(tmp_path):
    write_entries(tmp_path, [100, 100, 100, 100])
    assert prune_compilation_cache(tmp_path, max_bytes=250) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["entry2", "entry3"]


def test_prune_keeps_a_cache_within_the_bound(tmp_path):
    write_entries(tmp_path, [100, 100])
    assert prune_compilation_cache(tmp_path, max_bytes=200) == 0
    assert len(list(tmp_path.iterdir())) == 2
