"""Counter-based random numbers on the device, written once against the Array API.

The host generator (``numpy.random.Generator``) draws what is drawn once (initial
weights, the epochs' permutations). Randomness *inside* a training step (dropout
masks) must not cost a host transfer per step and must give the same bits on every
backend, so it comes from a counter-based generator evaluated on the device:
Threefry-2x32 with 20 rounds (Salmon, Moraes, Dror and Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC 2011; the variant JAX uses). A block is a keyed
bijection of a 64-bit counter::

    (x0, x1) = threefry2x32(key=(k0, k1), counter=(c0, c1))

built from 32-bit additions, rotations and exclusive ors only. xpmlp maps its
inputs onto it as::

    key     = (seed, step key)          counter = (block index, stream)

so a seed, a step key (the training step's counter), a stream (a layer) and an
element index give the same 32 bits on NumPy, PyTorch, JAX, array-api-strict and
CuPy (unverified on a GPU). Element ``j`` of a flattened draw takes word ``j % 2``
of block ``offset + j // 2``: a draw of ``(m, n)`` starting at block ``offset = c n / 2``
(``n`` even) is rows ``c .. c + m - 1`` of a larger one, so part of a draw (one
rank's columns of a batch, say) can be computed without the rest.

Portability. The words are held in **int32** arrays with the uint32 bits (two's
complement): PyTorch has no ``add`` for uint32, JAX without x64 has no 64-bit
integers and rejects Python ints above 2**31 - 1 next to its arrays, and every
backend wraps int32 addition modulo 2**32. A logical right shift is an arithmetic
one with the sign bits masked off. Python ints that stand next to arrays are kept
in int32's range.

No host transfer: the seed, the stream and a Python-int step key enter as Python
scalars (the key schedule of a Python-int key is computed in Python); a step key
that is a 0-d array (traced by ``jax.jit``, or a CUDA graph's counter) is used as
it is, on its device.
"""

from __future__ import annotations

import numbers

import array_api_compat

__all__ = ["threefry2x32", "random_bits", "column_bits", "uniform", "bernoulli", "below", "check_seed"]

_MASK = 0xFFFFFFFF
_PARITY = 0x1BD11BDA  #: Threefry's key-schedule constant (Threefish's C240 for 32-bit words)
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)  #: Threefry-2x32's rotation constants (Salmon et al., table 4)
_INT32_MIN = -(1 << 31)


def _signed(v: int) -> int:
    """The int32 that holds the 32 bits of the Python int ``v`` (taken modulo 2**32)."""
    v &= _MASK
    return v - (1 << 32) if v >> 31 else v


def _add(a, b):
    """``a + b`` modulo 2**32 (Python ints or int32 arrays, which wrap)."""
    if isinstance(a, int) and isinstance(b, int):
        return _signed(a + b)
    return a + b


def _rotl(x, r: int):
    """Rotate the 32 bits of ``x`` left by ``r`` (0 < r < 32)."""
    if isinstance(x, int):
        u = x & _MASK
        return _signed((u << r) | (u >> (32 - r)))
    return (x << r) | ((x >> (32 - r)) & ((1 << r) - 1))


def _word(v, xp, what: str):
    """A key or counter word: a Python int (as int32 bits), or an integer array as int32."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return _signed(int(v))
    if not xp.isdtype(v.dtype, "integral"):
        raise TypeError(f"{what} must be an integer or an integer array, got dtype {v.dtype}")
    return v if v.dtype == xp.int32 else xp.astype(v, xp.int32)


def threefry2x32(xp, key, counter, *, rounds: int = 20):
    """Threefry-2x32: the block ``(x0, x1)`` for ``key = (k0, k1)`` and ``counter = (c0, c1)``.

    Each word is a Python int (its low 32 bits are used) or an integer array (cast
    to int32); arrays broadcast. Returns two int32 arrays (or Python ints, when every
    input is one) holding the uint32 bits of the output words: view them as uint32
    (``numpy.asarray(x).view(numpy.uint32)``) to read the usual values.
    """
    k0, k1 = (_word(k, xp, "key") for k in key)
    x0, x1 = (_word(c, xp, "counter") for c in counter)
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = _add(x0, ks[0]), _add(x1, ks[1])
    for r in range(rounds):
        x0 = _add(x0, x1)
        x1 = _rotl(x1, _ROTATIONS[r % 8]) ^ x0
        if r % 4 == 3:  # key injection every four rounds
            s = r // 4 + 1
            x0 = _add(x0, ks[s % 3])
            x1 = _add(_add(x1, ks[(s + 1) % 3]), s)
    return x0, x1


def check_seed(seed, what: str = "seed") -> int:
    """``seed`` as a Python int in ``[0, 2**32)``, or a ``ValueError`` naming ``what``."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed <= _MASK:
        return int(seed)
    raise ValueError(f"{what} must be an integer in [0, 2**32), got {seed!r}")


def _is_zero(v) -> bool:
    return isinstance(v, numbers.Integral) and v == 0


def _blocks(xp, n_blocks: int, seed: int, key, stream: int, offset, device):
    """The blocks ``threefry2x32((seed, key), (offset + i, stream))``, ``i = 0..n_blocks-1``."""
    index = xp.arange(n_blocks, dtype=xp.int32, device=device)
    if not _is_zero(offset):
        index = _add(index, _word(offset, xp, "offset"))
    return threefry2x32(xp, (check_seed(seed), key), (index, stream))


def _size(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _device(key, device):
    if device is None and not isinstance(key, numbers.Integral):
        return array_api_compat.device(key)
    return device


def random_bits(xp, shape, *, seed: int, key, stream: int = 0, offset=0, device=None):
    """32 random bits per element, as an int32 array of ``shape`` (the uint32 bits).

    ``seed``: an int in ``[0, 2**32)``; ``key``: the step key, a Python int or a 0-d
    integer array (on the device: nothing is read back); ``stream``: a small int that
    separates the draws of one step (xpmlp uses the layer); ``offset``: the first block
    (an int or a 0-d integer array). Same inputs, same bits, on every backend.
    """
    n = _size(shape)
    x0, x1 = _blocks(xp, (n + 1) // 2, seed, key, stream, offset, _device(key, device))
    bits = xp.reshape(xp.stack((x0, x1), axis=1), (-1,))  # element j: word j % 2 of block j // 2
    if n % 2:
        bits = bits[:n]
    return xp.reshape(bits, tuple(shape))


def column_bits(xp, n: int, m: int, *, seed: int, key, stream: int = 0, column0=0, device=None):
    """32 random bits per element of an ``(n, m)`` int32 array, one column after the other:
    ``random_bits((m, 2 h), offset=column0 h)[:, :n].T`` with ``h = ceil(n / 2)``, computed in
    the ``(n, m)`` layout (C order, no transpose). Column ``c`` holds the bits of blocks
    ``(column0 + c) h .. + h``: a column's bits depend on its index, not on ``m``."""
    h = (n + 1) // 2
    device = _device(key, device)
    columns = xp.arange(m, dtype=xp.int32, device=device)
    if not _is_zero(column0):
        columns = columns + _word(column0, xp, "column0")
    index = xp.arange(h, dtype=xp.int32, device=device)[:, None] + columns[None, :] * h
    x0, x1 = threefry2x32(xp, (check_seed(seed), key), (index, stream))
    bits = xp.reshape(xp.stack((x0, x1), axis=1), (2 * h, m))  # row 2u + w: word w of block u
    return bits[:n, :] if 2 * h != n else bits


def uniform(xp, shape, *, seed: int, key, stream: int = 0, dtype=None, device=None):
    """Uniform numbers in ``[0, 1)`` of ``shape``: multiples of 2**-24 in float32, of 2**-53
    in float64 (the 53 bits of one whole block per element), exact on every backend."""
    dtype = xp.float32 if dtype is None else dtype
    if dtype == xp.float64:
        x0, x1 = _blocks(xp, _size(shape), seed, key, stream, 0, _device(key, device))
        hi = xp.astype((x0 >> 5) & ((1 << 27) - 1), dtype)  # 27 + 26 bits, as NumPy's random_sample
        lo = xp.astype((x1 >> 6) & ((1 << 26) - 1), dtype)
        u = (hi * float(1 << 26) + lo) * 2.0 ** -53
    else:
        bits = random_bits(xp, shape, seed=seed, key=key, stream=stream, device=device)
        u = xp.astype((bits >> 8) & ((1 << 24) - 1), dtype) * 2.0 ** -24
    return xp.reshape(u, tuple(shape))


def bernoulli(xp, shape, p: float, *, seed: int, key, stream: int = 0, offset=0, device=None):
    """A boolean array of ``shape``, each element True with probability ``p`` (a Python float
    in [0, 1]), independently: ``bits < round(p 2**32)`` compared as unsigned 32-bit
    integers, so the probability is exact to 2**-33 and no float is involved. The bits are
    :func:`random_bits`'s (``offset`` likewise)."""
    _check_probability(p)
    return below(xp, random_bits(xp, shape, seed=seed, key=key, stream=stream, offset=offset, device=device), p)


def _check_probability(p) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be in [0, 1], got {p!r}")


def below(xp, bits, p: float):
    """``bits < round(p 2**32)`` with ``bits`` read as unsigned: True with probability ``p`` for
    random bits (:func:`random_bits`, :func:`column_bits`)."""
    _check_probability(p)
    threshold = round(p * 2.0 ** 32)
    if threshold >= 1 << 32:
        return xp.ones_like(bits, dtype=xp.bool)
    # u < t as unsigned  <=>  (u ^ 2**31) < t - 2**31 as signed: flipping the top bit maps
    # unsigned order onto signed order
    return (bits ^ _INT32_MIN) < (threshold + _INT32_MIN)
