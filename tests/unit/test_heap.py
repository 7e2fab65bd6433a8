"""The worker's memory release: freed C-heap pages pinned behind live blocks go back to
the system, which glibc does not do on its own."""

from __future__ import annotations

import psutil
import pytest

from driftline.streams.worker import heap

pytestmark = pytest.mark.skipif(not heap.can_release(), reason="needs glibc's malloc_trim")


def test_free_pages_behind_live_blocks_go_back_to_the_system() -> None:
    process = psutil.Process()
    # 100 kB blocks stay under glibc's mmap threshold, so they come from the heap; keeping
    # every tenth one pins the heap's top, and the nine freed between them stay resident.
    blocks = [bytearray(100_000) for _ in range(1_500)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    kept = blocks[::10]
    del blocks
    before = process.memory_info().rss
    assert heap.release_free_memory()
    after = process.memory_info().rss
    assert before - after > 60_000_000, (before, after)
    assert len(kept) == 150
