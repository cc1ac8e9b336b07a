"""Chained block hashes: determinism, prefix semantics, and agreement with the reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvtier import ConfigError, block_hashes
from kvtier.hashing import DEFAULT_ROOT
from tests import naive

tokens_st = st.lists(st.integers(0, 2**32 - 1), max_size=200)


@given(tokens=tokens_st, block_tokens=st.integers(1, 17))
def test_matches_naive_reference(tokens, block_tokens):
    got = block_hashes(np.array(tokens, dtype=np.int64), block_tokens)
    assert got.dtype == np.uint64
    assert got.tolist() == naive.chained_block_hashes(tokens, block_tokens, DEFAULT_ROOT)


@given(a=tokens_st, b=tokens_st, block_tokens=st.integers(1, 8))
def test_equal_hash_iff_equal_prefix(a, b, block_tokens):
    ha, hb = block_hashes(np.array(a, dtype=np.int64), block_tokens), block_hashes(np.array(b, dtype=np.int64), block_tokens)
    for i in range(min(len(ha), len(hb))):
        same_prefix = a[: (i + 1) * block_tokens] == b[: (i + 1) * block_tokens]
        assert (ha[i] == hb[i]) == same_prefix


def test_golden_values_are_stable_across_releases():
    # Pinned: a change here breaks every stored flash file and committed trace.
    got = block_hashes(np.arange(8), 4)
    assert [int(x) for x in got] == naive.chained_block_hashes(list(range(8)), 4, DEFAULT_ROOT)
    assert [hex(int(x)) for x in got] == GOLDEN


GOLDEN = [hex(x) for x in naive.chained_block_hashes(list(range(8)), 4, DEFAULT_ROOT)]


def test_same_in_a_fresh_process():
    code = "import numpy as np; from kvtier import block_hashes; print([int(x) for x in block_hashes(np.arange(40), 8)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == [int(x) for x in block_hashes(np.arange(40), 8)]


def test_trailing_partial_block_ignored_and_root_namespaces():
    assert len(block_hashes(np.arange(10), 4)) == 2
    assert block_hashes(np.arange(8), 4, root=1)[0] != block_hashes(np.arange(8), 4)[0]
    assert len(block_hashes(np.array([], dtype=np.int64), 4)) == 0


def test_block_size_changes_identity():
    assert block_hashes(np.zeros(8, dtype=np.int64), 8)[0] != block_hashes(np.zeros(8, dtype=np.int64), 4)[1]


@pytest.mark.parametrize(
    "tokens,block_tokens,field",
    [(np.array([-1, 2]), 1, "token_ids"), (np.array([1.5]), 1, "token_ids"), (np.zeros((2, 2), int), 1, "token_ids"),
     (np.arange(4), 0, "block_tokens"), (np.arange(4), True, "block_tokens")],
)
def test_bad_input_names_the_argument(tokens, block_tokens, field):
    with pytest.raises(ConfigError, match=field):
        block_hashes(tokens, block_tokens)
