"""The counter-based generator (xpmlp._random): Threefry-2x32 on every backend.

Oracles: the published known-answer vectors of Threefry-2x32-20 (Random123's
kat_vectors, also in JAX's tests), JAX's own Threefry implementation (an independent
one) where installed, NumPy's bits against every other backend's, and statistics
whose bounds follow from the sample size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import _case
from xpmlp import _random, backends

M32 = 0xFFFFFFFF
#: Threefry-2x32, 20 rounds: (key, counter) -> output words (Random123 kat_vectors)
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]
#: the 13-round variant's vectors (Random123), to pin the round count and the injection schedule
KAT13 = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x9D1C5EC6, 0x8BD50731)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0xFD36D048, 0x2D17272C)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xBA3E4725, 0xF27D669E)),
]


def _u32(x) -> np.ndarray:
    """The uint32 values of an int32 array (or Python int) of any backend."""
    if isinstance(x, int):
        return np.array(x & M32, dtype=np.uint32)
    return np.asarray(backends.to_numpy(x)).astype(np.int32).view(np.uint32)


def _i32(words) -> np.ndarray:
    return np.array(words, dtype=np.uint32).view(np.int32)


@pytest.mark.parametrize("rounds, vectors", [(20, KAT), (13, KAT13)])
def test_known_answers_with_python_ints(rounds, vectors):
    for key, counter, want in vectors:
        x0, x1 = _random.threefry2x32(None, key, counter, rounds=rounds)
        assert (x0 & M32, x1 & M32) == want


def test_known_answers_on_every_backend(backend):
    """The three vectors as arrays (one element each), key and counter both arrays."""
    xp = backend.xp
    keys, counters, wants = zip(*KAT)

    def column(words, i):
        return backends.to_backend(_i32([w[i] for w in words]), xp, backend.device)

    x0, x1 = _random.threefry2x32(xp, (column(keys, 0), column(keys, 1)), (column(counters, 0), column(counters, 1)))
    assert x0.dtype == xp.int32 and x1.dtype == xp.int32
    assert _u32(x0).tolist() == [w[0] for w in wants]
    assert _u32(x1).tolist() == [w[1] for w in wants]


def test_matches_jax_threefry_on_random_inputs():
    """An independent implementation: JAX's threefry_2x32 (its count array is split into the
    two counter words: first half c0, second half c1)."""
    pytest.importorskip("jax")
    from jax.extend.random import threefry_2x32

    rng = np.random.default_rng(0)
    key = rng.integers(0, 2 ** 32, 2, dtype=np.uint32)
    count = rng.integers(0, 2 ** 32, 2 * 257, dtype=np.uint32)
    want = np.asarray(threefry_2x32(key, count))
    x0, x1 = _random.threefry2x32(np, (int(key[0]), int(key[1])), (count[:257].view(np.int32), count[257:].view(np.int32)))
    assert np.array_equal(np.concatenate([_u32(x0), _u32(x1)]), want)


def _bits(case, shape=(7, 9), **kw):
    kw = dict(seed=12345, key=41, stream=2) | kw
    return _u32(_random.random_bits(case.xp, shape, device=case.device, **kw))


def test_same_bits_on_every_backend(backend):
    mine = _bits(backend)
    assert mine.shape == (7, 9)
    assert np.array_equal(mine, _bits(_case("numpy")))
    for dtype in ("float32", "float64") if backend.has_float64 else ("float32",):
        xp = backend.xp
        u = _random.uniform(xp, (5, 3), seed=3, key=8, stream=1, dtype=getattr(xp, dtype), device=backend.device)
        ref = _random.uniform(np, (5, 3), seed=3, key=8, stream=1, dtype=getattr(np, dtype))
        assert u.dtype == getattr(xp, dtype)
        assert np.array_equal(backends.to_numpy(u), ref)
    mask = _random.bernoulli(backend.xp, (4, 6), 0.3, seed=1, key=5, device=backend.device)
    assert mask.dtype == backend.xp.bool
    assert np.array_equal(backends.to_numpy(mask), _random.bernoulli(np, (4, 6), 0.3, seed=1, key=5))


def test_elements_are_the_interleaved_words_of_consecutive_blocks():
    """Element j of a draw is word j % 2 of block (j // 2) = threefry((seed, key), (j // 2, stream))."""
    bits = _bits(_case("numpy"), shape=(5,), seed=9, key=4, stream=3)
    for j in range(5):
        block = _random.threefry2x32(None, (9, 4), (j // 2, 3))
        assert bits[j] == block[j % 2] & M32


def test_offset_starts_the_draw_at_a_later_block(backend):
    """Rows 3.. of a (10, 8) draw are the (7, 8) draw from block 3 * 8 / 2 = 12 (an int or an array)."""
    whole = _bits(backend, shape=(10, 8))
    assert np.array_equal(_bits(backend, shape=(7, 8), offset=12), whole[3:])
    offset = backend.xp.asarray(12, dtype=backend.xp.int32, device=backend.device)
    assert np.array_equal(_bits(backend, shape=(7, 8), offset=offset), whole[3:])


@pytest.mark.parametrize("n, m, column0", [(6, 5, 0), (5, 4, 0), (7, 3, 4)])
def test_column_bits_are_the_rows_of_random_bits_transposed(backend, n, m, column0):
    """column_bits(n, m, column0) = random_bits((m, 2h), offset=column0 h)[:, :n].T, h = ceil(n/2),
    computed in the (n, m) layout; the same on every backend."""
    h = (n + 1) // 2
    want = _bits(_case("numpy"), shape=(m, 2 * h), offset=column0 * h)[:, :n].T
    got = _random.column_bits(backend.xp, n, m, seed=12345, key=41, stream=2, column0=column0, device=backend.device)
    assert tuple(got.shape) == (n, m)
    assert np.array_equal(_u32(got), want)


def test_key_as_a_device_array_gives_the_python_int_bits(backend):
    """The training loops pass the step key as a Python int (eager), an int32 array (JAX's scan)
    or an int64 counter (CUDA graphs): the same key gives the same bits."""
    xp = backend.xp
    want = _bits(backend, key=2 ** 31 + 5)
    for dtype in (xp.int32, xp.int64):
        if dtype not in backend.xp.__array_namespace_info__().dtypes(device=backend.device).values():
            continue
        key = xp.asarray(2 ** 31 + 5 if dtype == xp.int64 else -(2 ** 31) + 5, dtype=dtype, device=backend.device)
        assert np.array_equal(_bits(backend, key=key), want)


def test_traced_by_jax_jit_equals_eager():
    case = _case("jax")
    import jax

    @jax.jit
    def draw(key):
        return _random.bernoulli(case.xp, (6, 11), 0.7, seed=99, key=key, stream=1)

    for k in (0, 1, 2 ** 31 - 1):
        eager = _random.bernoulli(np, (6, 11), 0.7, seed=99, key=k, stream=1)
        assert np.array_equal(np.asarray(draw(case.xp.asarray(k, dtype=case.xp.int32))), eager)


def test_works_without_64_bit_integers():
    """array-api-strict's no_x64 device (like JAX without x64) has no int64 or float64."""
    import array_api_strict as xp

    device = xp.Device("no_x64")
    bits = _random.random_bits(xp, (3, 4), seed=7, key=3, device=device)
    assert bits.device == device
    assert np.array_equal(_u32(bits), _u32(_random.random_bits(np, (3, 4), seed=7, key=3)))
    u = _random.uniform(xp, (10,), seed=7, key=3, dtype=xp.float32, device=device)
    assert u.dtype == xp.float32


def test_jax_without_x64():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with jax.enable_x64(False):
        bits = _random.random_bits(jnp, (4, 5), seed=11, key=jnp.asarray(6, dtype=jnp.int32), stream=1)
        assert bits.dtype == jnp.int32
        got = _u32(bits)
    assert np.array_equal(got, _u32(_random.random_bits(np, (4, 5), seed=11, key=6, stream=1)))


def test_distinct_seeds_keys_and_streams_give_unrelated_bits():
    """Half the bits agree between two unrelated 32-bit draws: over n words the count of
    agreeing bits is Binomial(32 n, 1/2), so within 6 standard deviations of 16 n."""
    case = _case("numpy")
    n = 4096
    base = _bits(case, shape=(n,))
    sd = math.sqrt(32 * n * 0.25)
    for change in (dict(seed=12346), dict(key=42), dict(stream=3)):
        other = _bits(case, shape=(n,), **change)
        agree = 32 * n - int(np.unpackbits((base ^ other).view(np.uint8)).sum())
        assert abs(agree - 16 * n) < 6 * sd, change


def test_uniform_statistics_and_range():
    """Mean 1/2 and variance 1/12 within 6 standard errors (n = 200000); float32 values are
    multiples of 2**-24 and float64 use more than 32 bits."""
    n = 200_000
    for dtype in (np.float32, np.float64):
        u = _random.uniform(np, (n,), seed=2024, key=17, dtype=dtype).astype(np.float64)
        assert u.min() >= 0.0 and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 6 * math.sqrt(1 / 12 / n)
        # var of (U - 1/2)^2 is 1/80 - 1/144
        assert abs(((u - 0.5) ** 2).mean() - 1 / 12) < 6 * math.sqrt((1 / 80 - 1 / 144) / n)
    u32 = _random.uniform(np, (1000,), seed=1, key=1, dtype=np.float32)
    assert np.array_equal(u32 * 2 ** 24, np.floor(u32 * 2 ** 24))
    u64 = _random.uniform(np, (1000,), seed=1, key=1, dtype=np.float64)
    assert not np.array_equal(u64 * 2 ** 32, np.floor(u64 * 2 ** 32))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.93])
def test_bernoulli_frequency(p):
    n = 100_000
    hits = _random.bernoulli(np, (n,), p, seed=5, key=123, stream=4).sum()
    assert abs(hits / n - p) < 6 * math.sqrt(p * (1 - p) / n)


def test_bernoulli_edges_and_errors():
    assert not _random.bernoulli(np, (50,), 0.0, seed=0, key=0).any()
    assert _random.bernoulli(np, (50,), 1.0, seed=0, key=0).all()
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\], got 1.5"):
        _random.bernoulli(np, (3,), 1.5, seed=0, key=0)
    for bad in (-1, 2 ** 32, 1.5, "0", True):
        with pytest.raises(ValueError, match=r"dropout_seed must be an integer in \[0, 2\*\*32\)"):
            _random.check_seed(bad, "dropout_seed")
    with pytest.raises(TypeError, match="key must be an integer"):
        _random.random_bits(np, (2,), seed=0, key=np.asarray(1.0))
