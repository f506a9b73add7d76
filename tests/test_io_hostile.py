"""xpmlp.io on hostile files and killed saves: every bad file is a ModelFileError, in bounded time and
memory; no temporary file outlives the next save; the previous file is never lost."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest

import xpmlp
import xpmlp.io as xio
from xpmlp import backends
from xpmlp.estimators import MLPClassifier
from xpmlp.io import DEFAULT_MAX_SIZE, ModelFileError, load, read_metadata, save
from xpmlp.training import ConvergenceWarning

pytestmark = pytest.mark.filterwarnings(f"ignore::{ConvergenceWarning.__module__}.ConvergenceWarning")

GIB = 1 << 30
# What refusing a hostile file may cost: a small constant, whatever the file claims.
MEMORY_LIMIT = 16 << 20


# ------------------------------------------------------------------------ helpers
def _members(path) -> list[dict]:
    """A model file's members as ``{"name", "data"}`` (uncompressed), in order."""
    with zipfile.ZipFile(path) as archive:
        return [{"name": info.filename, "data": archive.read(info)} for info in archive.infolist()]


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _write_zip(path, entries: list[dict]) -> None:
    """A ZIP archive written by hand, so that a test can make it lie.

    Each entry: ``name``, ``data`` (the uncompressed bytes) or ``raw`` (the bytes as stored,
    already compressed), and optionally ``method`` (8: deflate, 0: stored), ``size`` (the
    declared uncompressed size), ``crc`` and ``flags``.
    """
    body, directory = bytearray(), bytearray()
    for e in entries:
        name = e["name"].encode()
        method = e.get("method", 8)
        data = e.get("data")
        raw = e["raw"] if "raw" in e else (_deflate(data) if method == 8 else data)
        size = e.get("size", len(data) if data is not None else 0)
        crc = e.get("crc", zlib.crc32(data) if data is not None else 0)
        flags = e.get("flags", 0)
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, len(raw), size,
                            len(name), 0) + name + raw
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, crc, len(raw), size,
                                 len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    with open(path, "wb") as fh:
        fh.write(bytes(body + directory + end))


def _rewrite_header(path, change) -> None:
    """Rewrite a model file with ``change(header)`` applied (a valid archive: CRCs are right)."""
    entries = _members(path)
    header = json.loads(entries[0]["data"])
    change(header)
    entries[0]["data"] = json.dumps(header).encode()
    _write_zip(path, entries)


def _zero_bomb(prefix: bytes, zeros: int, chunk: int = 4 << 20) -> bytes:
    """Raw deflate of ``prefix`` and ``zeros`` zero bytes, built without compressing them all:
    after a full flush the compressor forgets its history, so every chunk of zeros compresses
    to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(zeros, chunk)
    return head + repeat * count + c.compress(bytes(rest)) + c.flush()


def _npy_header(dtype, shape) -> bytes:
    """A version 1.0 .npy header (magic included) as numpy writes it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def _refuse(path, *fragments, call=load, **kwargs) -> str:
    with pytest.raises(ModelFileError) as info:
        call(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@contextlib.contextmanager
def _bounded(seconds: float = 5.0, memory: int = MEMORY_LIMIT):
    """Fail if the block takes longer than ``seconds`` (interrupting a blocked system call) or
    allocates more than ``memory`` bytes at its peak (NumPy's and Python's allocations)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert peak < memory, f"peak {peak / 2**20:.1f} MiB"


def _load_or_refuse(path) -> object:
    """A load that must succeed or be refused with ModelFileError, nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load(path)
        except ModelFileError as exc:
            assert str(path) in str(exc)
            return exc


@pytest.fixture(scope="module")
def clf_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.array(["cat", "dog", "emu"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)]
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0, early_stopping=True).fit(X, y)
    clf.feature_names_in_ = np.array(["a", "b", "c", "d"], dtype=object)
    path = tmp_path_factory.mktemp("clf") / "clf.xpmlp"
    save(clf, path, metadata={"note": "hostile tests"})
    return path


@pytest.fixture
def clf_copy(clf_file, tmp_path):
    path = tmp_path / "clf.xpmlp"
    path.write_bytes(clf_file.read_bytes())
    return path


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.xpmlp"
    save(xpmlp.MLP([5, 7, 3], ["relu", "softmax"], "cross_entropy", dtype="float64", seed=0), path)
    return path


# --------------------------------------------------------------------------- bombs
def test_a_two_gib_bomb_in_two_mib_is_refused_before_inflating(net_file):
    """The issue's case: W1.npy's header says (7, 5) but its member inflates to 2 GiB."""
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    w1["raw"] = _zero_bomb(w1["data"][:128], 2 * GIB)
    w1["size"] = 128 + 2 * GIB
    _write_zip(net_file, entries)
    assert net_file.stat().st_size < 3 << 20
    with _bounded(seconds=2.0):
        _refuse(net_file, "declare 2147485", "refused before inflating")


def test_a_bomb_with_a_consistent_header_is_refused_before_inflating(net_file):
    """Header, manifest and members all agree on a 3.75 GiB network, in a file of a few MiB."""
    n = 1 << 26
    entries = _members(net_file)

    def grow(header):
        header["network"]["sizes"] = [5, n, 3]
        header["arrays"].update(W1={"dtype": "<f8", "shape": [n, 5]}, b1={"dtype": "<f8", "shape": [n, 1]},
                                W2={"dtype": "<f8", "shape": [3, n]})

    header = json.loads(entries[0]["data"])
    grow(header)
    entries[0]["data"] = json.dumps(header).encode()
    for e in entries[1:]:
        shape = tuple(header["arrays"][e["name"][:-4]]["shape"])
        prefix = _npy_header("<f8", shape)
        zeros = int(np.prod(shape)) * 8
        e.update(raw=_zero_bomb(prefix, zeros), size=len(prefix) + zeros, crc=0)
    _write_zip(net_file, entries)
    with _bounded(seconds=2.0):
        _refuse(net_file, "more than 32 times the file's", "refused before inflating")
        _refuse(net_file, "refused before inflating", call=read_metadata)


@pytest.mark.parametrize("crc_of", ["declared bytes", "whole stream"])
def test_a_member_that_inflates_past_its_declared_size_stops_there(net_file, crc_of):
    """The ZIP directory declares W1.npy's true size; its deflate stream goes on for 2 GiB. Only the
    declared bytes are ever inflated: with their CRC the file loads (those bytes are a valid array),
    with any other CRC it is corrupt."""
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    declared = len(w1["data"])
    w1["raw"] = _zero_bomb(w1["data"][:128], 2 * GIB)
    w1["size"] = declared
    w1["crc"] = zlib.crc32(w1["data"][:128] + bytes(declared - 128)) if crc_of == "declared bytes" else 0x12345678
    _write_zip(net_file, entries)
    with _bounded(seconds=2.0):
        if crc_of == "declared bytes":
            net = load(net_file)
            np.testing.assert_array_equal(backends.to_numpy(net.params[0][0]), np.zeros((7, 5)))
        else:
            _refuse(net_file, "cannot read array 'W1'", "CRC")


def test_a_huge_zip_directory_is_never_allocated(net_file):
    """An end record claiming a 3 GiB central directory: refused before that read."""
    data = bytearray(net_file.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<L", data, end + 12, 3 * GIB)
    net_file.write_bytes(bytes(data))
    with _bounded(seconds=2.0):
        _refuse(net_file, "corrupt")


# ------------------------------------------------------------------- not regular files
def test_dev_zero_is_refused_at_once():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    with _bounded(seconds=1.0):
        _refuse("/dev/zero", "is a character device", "regular files only")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_without_a_writer_does_not_hang(tmp_path):
    fifo = tmp_path / "model.xpmlp"
    os.mkfifo(fifo)
    with _bounded(seconds=1.0):
        _refuse(fifo, "is a FIFO")
        _refuse(fifo, "is a FIFO", call=read_metadata)


def test_directory_socket_and_links_to_them(tmp_path):
    _refuse(tmp_path, "is a directory")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        _refuse(sock_path, "is a socket")
    link = tmp_path / "zero.xpmlp"
    link.symlink_to("/dev/zero")
    with _bounded(seconds=1.0):
        _refuse(link, "is a character device")


def test_file_size_limit(tmp_path, net_file):
    assert DEFAULT_MAX_SIZE == 4 * GIB
    size = net_file.stat().st_size
    _refuse(net_file, f"the file is {size} bytes, over the limit of {size - 1} bytes", "max_size=",
            max_size=size - 1)
    assert load(net_file, max_size=size).sizes == [5, 7, 3]
    assert load(net_file, max_size=None).sizes == [5, 7, 3]
    big = tmp_path / "big.xpmlp"
    with open(big, "wb") as fh:  # sparse: 5 GiB that take no disk and must not be read
        fh.write(b"PK")
        fh.truncate(5 * GIB)
    with _bounded(seconds=1.0):
        _refuse(big, f"over the limit of {DEFAULT_MAX_SIZE} bytes")
        _refuse(big, "over the limit", call=read_metadata)


# ------------------------------------------------------------------------ .npy headers
def test_npy_header_claiming_8_tib_is_refused_before_allocating(net_file):
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    w1["data"] = _npy_header("<f8", (1 << 20, 1 << 20)) + w1["data"][128:]
    _write_zip(net_file, entries)
    with _bounded(seconds=1.0):
        _refuse(net_file, "array 'W1' is <f8 [1048576, 1048576], the header says <f8 [7, 5]")


def test_manifest_and_sizes_claiming_8_tib_are_refused_before_allocating(net_file):
    n = 1 << 37  # W1: (n, 5) float64 = 5 TiB, b1 and W2: 4 TiB more
    _rewrite_header(net_file, lambda h: (h["network"].update(sizes=[5, n, 3]), h["arrays"].update(
        W1={"dtype": "<f8", "shape": [n, 5]}, b1={"dtype": "<f8", "shape": [n, 1]},
        W2={"dtype": "<f8", "shape": [3, n]})))
    with _bounded(seconds=1.0):
        _refuse(net_file, "the member 'W1.npy' declares 408 bytes, but array 'W1'", "refused before inflating")


@pytest.mark.parametrize("header, fragment", [
    (b"\x93NUMPY\x03\x00", "format version 1 or 2"),
    (b"\x93NUMPX\x01\x00", "not a .npy array"),
    (b"\x93NUMPY\x02\x00\xff\xff\xff\xff", "a .npy header of 4294967295 bytes"),
    (_npy_header("<f8", (7, 5)).replace(b"False", b"True "), "Fortran order"),
    (_npy_header("<f8", (7, 5)).replace(b"(7, 5)", b"[[[7]]]"), "cannot read the .npy header"),
])
def test_malformed_npy_headers(net_file, header, fragment):
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    w1["data"] = header + w1["data"][len(header):]
    _write_zip(net_file, entries)
    with _bounded(seconds=1.0):
        _refuse(net_file, fragment)


def _write_sentinel(path):  # what a malicious pickle would run
    with open(path, "w") as fh:
        fh.write("pwned")
    return 0


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return _write_sentinel, (self.path,)


@pytest.mark.parametrize("manifest_dtype, fragment", [
    ("<f8", "refused: array 'W1' holds Python objects (object), which only unpickling could read"),
    ("|O", "array 'W1' is object (7, 5); sizes [5, 7, 3] and dtype float64 require float64 (7, 5)"),
])
def test_a_pickle_bearing_member_is_never_unpickled(net_file, tmp_path, manifest_dtype, fragment):
    sentinel = tmp_path / "pwned"
    payload = np.empty((7, 5), dtype=object)
    payload[...] = _Payload(str(sentinel))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, payload, allow_pickle=True)
    with pytest.raises(ValueError, match="Object arrays cannot be loaded when allow_pickle=False"):
        np.lib.format.read_array(io.BytesIO(buf.getvalue()), allow_pickle=False)
    np.lib.format.read_array(io.BytesIO(buf.getvalue()), allow_pickle=True)
    assert sentinel.exists()  # the payload is live: unpickling it runs code
    sentinel.unlink()
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    w1["data"] = buf.getvalue()
    header = json.loads(entries[0]["data"])
    header["arrays"]["W1"]["dtype"] = manifest_dtype
    entries[0]["data"] = json.dumps(header).encode()
    _write_zip(net_file, entries)
    _refuse(net_file, fragment)
    assert not sentinel.exists()


# ---------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("text, fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "nests 100000 deep"),
    (b'{"format": "xpmlp", "metadata": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "nests 41 deep"),
    (b'{"s": "' + b"[" * 5000 + b'", "format": 7}', "format 7"),  # brackets in a string do not count
    (b'{"format": "xpmlp", "format_version": NaN}', "NaN is not allowed"),
    (b'{"format": "xpmlp", "format": "xpmlp"}', "duplicated key(s) ['format']"),
    (b'{"format": "xpmlp", "format_version": 1' + b"0" * 5000 + b"}", "cannot read xpmlp.json"),
    (b"\xff\xfe{}", "cannot read xpmlp.json"),
])
def test_hostile_json_headers(net_file, text, fragment):
    entries = _members(net_file)
    entries[0]["data"] = text
    _write_zip(net_file, entries)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)  # the nesting bound must not rely on the recursion limit
    try:
        with _bounded(seconds=2.0):
            _refuse(net_file, fragment)
    finally:
        sys.setrecursionlimit(limit)


def test_header_over_its_size_limit(net_file):
    entries = _members(net_file)
    entries[0].update(data=entries[0]["data"][:-1] + b" " * (4 << 20) + b"}", method=0)  # stored: no ratio issue
    _write_zip(net_file, entries)
    _refuse(net_file, "xpmlp.json declares 4194", "over the limit of 4194304")


def test_save_refuses_metadata_that_load_would_refuse(tmp_path):
    net = xpmlp.MLP([2, 1], ["identity"])
    deep = {}
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="nested 4[0-9] deep, over the 32"):
        save(net, tmp_path / "m.xpmlp", metadata=deep)
    with pytest.raises(ValueError, match="header would be [0-9]+ bytes, over the 4194304"):
        save(net, tmp_path / "m.xpmlp", metadata={"big": "x" * (4 << 20)})
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ ZIP level
def test_duplicated_member(net_file):
    entries = _members(net_file)
    w1 = next(e for e in entries if e["name"] == "W1.npy")
    other = dict(w1, data=_npy_header("<f8", (7, 5)) + np.ones((7, 5)).tobytes())
    _write_zip(net_file, entries + [other])
    _refuse(net_file, "the member 'W1.npy' appears twice")


@pytest.mark.parametrize("change, fragment", [
    ({"flags": 0x1}, "flags 0x0001 (encrypted or patched)"),
    ({"flags": 0x20}, "flags 0x0020"),
    ({"method": 12, "raw": b"BZh9"}, "compression method 12"),
    ({"method": 14}, "compression method 14"),
])
def test_encrypted_and_unknown_methods(net_file, change, fragment):
    entries = _members(net_file)
    entries[1].update(change)
    _write_zip(net_file, entries)
    _refuse(net_file, fragment)


def test_extra_member_and_extra_array(net_file):
    entries = _members(net_file)
    _write_zip(net_file, entries + [{"name": "notes.txt", "data": b"hello"}])
    _refuse(net_file, "unexpected members ['notes.txt']")
    _write_zip(net_file, entries)
    _rewrite_header(net_file, lambda h: h["arrays"].update(W9={"dtype": "<f8", "shape": [1, 1]}))
    _refuse(net_file, "lists arrays ['W9']")


# ------------------------------------------------------------------------- fuzzing
def _flip_cases(data: bytes, count: int, seed: int):
    rng = random.Random(seed)
    for i in range(count):
        mutated = bytearray(data)
        if i % 3 == 0:  # one bit
            pos = rng.randrange(len(data))
            mutated[pos] ^= 1 << rng.randrange(8)
        elif i % 3 == 1:  # one byte, any value
            mutated[rng.randrange(len(data))] = rng.randrange(256)
        else:  # a few bytes at once
            for _ in range(rng.randint(2, 8)):
                mutated[rng.randrange(len(data))] = rng.randrange(256)
        yield bytes(mutated)


def test_bit_flips_anywhere_load_or_raise_model_file_error(clf_file, tmp_path):
    original = clf_file.read_bytes()
    path = tmp_path / "flipped.xpmlp"
    outcomes = {"loaded": 0, "refused": 0}
    for mutated in _flip_cases(original, 300, seed=11):
        path.write_bytes(mutated)
        result = _load_or_refuse(path)
        outcomes["refused" if isinstance(result, ModelFileError) else "loaded"] += 1
        with contextlib.suppress(ModelFileError):
            read_metadata(path)
    assert outcomes["refused"] > 250, outcomes  # a flip almost always breaks a CRC or a structure


@pytest.mark.parametrize("seed, member", list(enumerate(["xpmlp.json", "W1.npy", "b2.npy"])))
def test_flips_inside_members_with_valid_crcs(clf_file, tmp_path, seed, member):
    """The same, past the CRCs: the JSON text and the .npy headers themselves are damaged."""
    entries = _members(clf_file)
    target = next(e for e in entries if e["name"] == member)
    data = target["data"]
    region = data if member == "xpmlp.json" else data[:128]  # the .npy header
    path = tmp_path / "flipped.xpmlp"
    for mutated in _flip_cases(region, 150, seed=seed):
        target["data"] = mutated + data[len(region):]
        _write_zip(path, entries)
        _load_or_refuse(path)
        with contextlib.suppress(ModelFileError):
            read_metadata(path)


_WRONG_VALUES = ["6", 6, -1, 2.5, 1e300, True, None, [], [1], {}, {"a": 1}, 10 ** 30, "", "relu"]


def _fields(value, where=()):
    """Every path into a JSON value (containers and leaves)."""
    yield where
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _fields(item, where + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            yield from _fields(item, where + (i,))


def _set(header, where, value):
    parent = header
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value


def test_every_header_field_with_every_wrong_type(clf_file, net_file, tmp_path):
    """Each field of a classifier's and a network's header replaced by values of other types: each
    file loads or is refused with a ModelFileError, nothing else."""
    path = tmp_path / "typed.xpmlp"
    cases = 0
    for source in (clf_file, net_file):
        entries = _members(source)
        header = json.loads(entries[0]["data"])
        for where in list(_fields(header))[1:]:
            if where[0] == "metadata":
                continue
            for value in _WRONG_VALUES:
                changed = copy.deepcopy(header)
                _set(changed, where, value)
                entries[0]["data"] = json.dumps(changed).encode()
                _write_zip(path, entries)
                _load_or_refuse(path)
                cases += 1
    assert cases > 1000


@pytest.mark.parametrize("where, value, fragment", [
    (("state", "n_features_in_"), "6", "header field 'state.n_features_in_' must be an integer in [1, "),
    (("state", "n_iter_"), [3], "header field 'state.n_iter_' must be an integer in [0, "),
    (("state", "sizes"), [4, "6", 3], "header field 'state.sizes[1]' must be an integer in [1, "),
    (("state", "loss_curve_"), 1.5, "header field 'state.loss_curve_' must be a list of finite numbers, got 1.5"),
    (("state", "classes_dtype"), 5, "header field 'state.classes_dtype' must be a string, got 5"),
    (("state", "multilabel"), "false", "header field 'state.multilabel' must be true or false"),
    (("state", "best_loss_"), "0.5", "header field 'state.best_loss_' must be a finite number or null"),
    (("state", "params", "alpha"), {"x": 1}, "header field 'state.params.alpha' must be"),
    (("state", "activation_configs"), [[], {}], "header field 'state.activation_configs[0]' must be an object"),
    (("arrays", "W1", "shape"), "7, 5", "header field 'arrays.W1.shape' must be a list of integers"),
    (("saved_on", "backend"), 3, "header field 'saved_on.backend' must be a string"),
    (("kind",), ["MLPClassifier"], "header field 'kind' must be a string"),
    (("state", "t_"), 1e20, "header field 'state.t_' must be an integer"),
])
def test_wrong_types_name_the_field(clf_copy, where, value, fragment):
    _rewrite_header(clf_copy, lambda h: _set(h, where, value))
    _refuse(clf_copy, fragment)
    if where[-1] not in ("alpha",):  # hyperparameters are validated on load only
        _refuse(clf_copy, fragment, call=read_metadata)


def test_wrong_types_in_a_network_header(net_file):
    _rewrite_header(net_file, lambda h: h["network"].update(sizes=[5, 7.0, 3]))
    _refuse(net_file, "header field 'network.sizes[1]' must be an integer")
    _rewrite_header(net_file, lambda h: h["network"].update(sizes=[5, 7, 3], follows_arrays="yes"))
    _refuse(net_file, "header field 'network.follows_arrays' must be true or false")
    _rewrite_header(net_file, lambda h: h["network"].update(follows_arrays=False, activations=["relu", "softmax"]))
    _refuse(net_file, "header field 'network.activations[0]' must be an object")


# ------------------------------------------------------------------- consistency
@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.update(classes_=["cat", "dog", "emu", "fox"]), "4 classes_ need 4 output(s), the network has 3"),
    (lambda s: s.update(classes_=["cat", "dog"]), "2 classes_ need 1 output(s), the network has 3"),
    (lambda s: s.update(classes_=["dog", "cat", "emu"]), "are not unique and sorted"),
    (lambda s: s.update(classes_=["cat", "cat", "emu"]), "are not unique and sorted"),
    (lambda s: s.update(classes_=["cat", "dog", "emus"]), "do not come back unchanged as <U3"),
    (lambda s: s.update(classes_=[1, 2, 3]), "do not come back unchanged as <U3"),
    (lambda s: s.update(classes_dtype="|V8"), "is not a NumPy dtype of numbers, booleans or strings"),
    (lambda s: s.update(classes_=[1, 2, 3], classes_dtype="<M8"), "is not a NumPy dtype"),
    (lambda s: s.update(classes_=[]), "a classifier needs at least 2 classes_, the file has 0"),
    (lambda s: s.update(n_features_in_=6), "n_features_in_ = 6 and n_outputs_ = 3, but the network's sizes are"),
    (lambda s: s.update(n_outputs_=2), "n_outputs_ = 2"),
    (lambda s: s.update(out_activation_="sigmoid"), "out_activation_ is 'sigmoid' but the output layer is 'softmax'"),
    (lambda s: s.update(feature_names_in_=["a"]), "1 feature_names_in_ for 4 features"),
    (lambda s: s.update(activations=["relu"]), "define 2 layers but there are 1 activations"),
    (lambda s: s.update({"class": "MLPRegressor"}), "its state is of class 'MLPRegressor'"),
])
def test_inconsistent_classifier_fields(clf_copy, change, fragment):
    _rewrite_header(clf_copy, lambda h: change(h["state"]))
    _refuse(clf_copy, fragment)


@pytest.mark.parametrize("change, fragment", [
    (lambda p: p.update(alpha=-1), "state.params: alpha must be a number in [0, inf), got -1"),
    (lambda p: p.update(hidden_layer_sizes=[0]), "hidden_layer_sizes must be positive integers"),
    (lambda p: p.update(solver="lbfgs2"), "unknown solver 'lbfgs2'"),
    (lambda p: p.update(evil=1), "unknown parameter(s) ['evil']"),
])
def test_hyperparameters_are_validated_on_load(clf_copy, change, fragment):
    _rewrite_header(clf_copy, lambda h: change(h["state"]["params"]))
    _refuse(clf_copy, fragment)


def test_output_layer_that_does_not_fit_the_targets(clf_copy):
    def binary_head(h):  # consistent with itself, but three classes need softmax + cross-entropy
        h["state"].update(out_activation_="sigmoid", loss="binary_cross_entropy", activations=["relu", "sigmoid"])

    _rewrite_header(clf_copy, binary_head)
    _refuse(clf_copy, "its output layer is 'sigmoid' with loss 'binary_cross_entropy', but its targets need "
                      "'softmax' with 'cross_entropy'")


def test_regressor_y_1d_needs_one_output(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    reg = xpmlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, X[:, :2])
    path = tmp_path / "reg.xpmlp"
    save(reg, path)
    assert load(path).predict(X).shape == (30, 2)
    _rewrite_header(path, lambda h: h["state"].update(y_1d=True))
    _refuse(path, "y_1d is true but the network has 2 outputs")


@pytest.mark.parametrize("where, bad", [("W1", np.nan), ("b2", np.inf), ("W2", -np.inf)])
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, where, bad):
    net = xpmlp.MLP([5, 7, 3], ["relu", "softmax"], "cross_entropy", dtype="float32", seed=0)
    params = [(backends.to_numpy(W).copy(), backends.to_numpy(b).copy()) for W, b in net.params]
    layer, which = int(where[1]) - 1, 0 if where[0] == "W" else 1
    params[layer][which][0, 0] = bad
    net.params = params
    path = tmp_path / "nan.xpmlp"
    save(net, path)
    _refuse(path, f"array {where!r} holds 1 NaN or infinite value(s)", "allow_nonfinite=True")
    back = load(path, allow_nonfinite=True)
    np.testing.assert_array_equal(backends.to_numpy(back.params[layer][which]), params[layer][which])


def test_all_zero_weights_are_stored_and_load(tmp_path):
    """Deflate would shrink them past the loader's ratio bound: the writer stores them instead."""
    net = xpmlp.MLP([4096, 64, 1], ["relu", "identity"], dtype="float64", seed=0)
    net.params = [(np.zeros_like(backends.to_numpy(W)), np.zeros_like(backends.to_numpy(b))) for W, b in net.params]
    path = tmp_path / "zeros.xpmlp"
    save(net, path)
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert path.stat().st_size > 64 * 4096 * 8
    back = load(path)
    np.testing.assert_array_equal(backends.to_numpy(back.params[0][0]), np.zeros((64, 4096)))


# -------------------------------------------------------------------------- saves
def _orphans(directory, keep=("model.xpmlp",)):
    return sorted(name for name in os.listdir(directory) if name not in keep)


@pytest.fixture(params=[True, False], ids=["O_TMPFILE", "named-temp"])
def save_path(request, monkeypatch):
    """Run a test with both ways of writing a save (the named one is the fallback)."""
    if request.param and not xio._write._anonymous_files_work():
        pytest.skip("O_TMPFILE is not available here")
    monkeypatch.setattr(xio._write, "_USE_O_TMPFILE", request.param)
    return request.param


def test_resaving_keeps_permission_bits(tmp_path, save_path):
    net = xpmlp.MLP([3, 2], ["identity"], seed=0)
    path = tmp_path / "model.xpmlp"
    save(net, path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # a new file: the umask's default
    for mode in (0o600, 0o640, 0o604):
        path.chmod(mode)
        save(xpmlp.MLP([3, 2], ["identity"], seed=mode), path)
        assert stat.S_IMODE(path.stat().st_mode) == mode
    assert _orphans(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give files away")
def test_resaving_keeps_owner_and_group_where_allowed(tmp_path, save_path):
    path = tmp_path / "model.xpmlp"
    save(xpmlp.MLP([3, 2], ["identity"], seed=0), path)
    os.chown(path, 1, 1)
    save(xpmlp.MLP([3, 2], ["identity"], seed=1), path)
    assert (path.stat().st_uid, path.stat().st_gid) == (1, 1)


def test_o_tmpfile_saves_never_name_a_file_before_it_is_complete(tmp_path, monkeypatch):
    if not xio._write._anonymous_files_work():
        pytest.skip("O_TMPFILE is not available here")
    calls = []
    real = xio._write._create_temp
    monkeypatch.setattr(xio._write, "_create_temp", lambda *args: calls.append(args[2]) or real(*args))
    path = tmp_path / "model.xpmlp"
    save(xpmlp.MLP([3, 2], ["identity"], seed=0), path)  # linked straight to the target
    save(xpmlp.MLP([3, 2], ["identity"], seed=1), path)  # linked to a temporary name, renamed over it
    assert calls == [True, True]  # no fallback to a named temporary file
    assert _orphans(tmp_path) == []
    np.testing.assert_array_equal(backends.to_numpy(load(path).params[0][0]),
                                  backends.to_numpy(xpmlp.MLP([3, 2], ["identity"], seed=1).params[0][0]))


def test_saving_over_a_fifo_or_device_is_refused(tmp_path):
    fifo = tmp_path / "model.xpmlp"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match="is not a regular file \\(a FIFO\\)"):
        save(xpmlp.MLP([3, 2], ["identity"]), fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_sweep_removes_only_unlocked_old_temporary_files(tmp_path, save_path):
    old = time.time() - 60
    dead = tmp_path / ".model.xpmlp.xpmlp-tmp-0123456789abcdef"
    alive = tmp_path / ".other.xpmlp.xpmlp-tmp-fedcba9876543210"
    young = tmp_path / ".model.xpmlp.xpmlp-tmp-00000000000000ff"
    lookalike = tmp_path / ".model.xpmlp.xpmlp-tmp-notours"
    for p in (dead, alive, young, lookalike):
        p.write_bytes(b"partial")
    for p in (dead, alive, lookalike):
        os.utime(p, (old, old))
    fd = os.open(alive, os.O_RDONLY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a save in progress (another open file: a conflict)
        save(xpmlp.MLP([3, 2], ["identity"]), tmp_path / "model.xpmlp")
        assert _orphans(tmp_path) == sorted(p.name for p in (alive, young, lookalike))
    finally:
        os.close(fd)
    save(xpmlp.MLP([3, 2], ["identity"]), tmp_path / "model.xpmlp")
    assert _orphans(tmp_path) == sorted(p.name for p in (young, lookalike))


_SAVER = """
import os, sys
import xpmlp, xpmlp.io as xio
xio._write._USE_O_TMPFILE = sys.argv[2] == "anonymous"
nets = [xpmlp.MLP({sizes}, ["relu", "tanh", "identity"], dtype="float64", seed=s) for s in (1, 2)]
for _ in sys.stdin:  # one worker per line, forked so that the imports above are paid once
    pid = os.fork()
    if pid == 0:
        while True:
            for net in nets:
                xpmlp.save(net, sys.argv[1])
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL")
def test_sigkill_during_saves_leaves_the_target_whole_and_no_orphan_after_the_next_save(tmp_path, save_path):
    sizes = [256, 512, 512, 10]  # 3.4 MiB of float64: a save takes a good fraction of a second
    nets = [xpmlp.MLP(sizes, ["relu", "tanh", "identity"], dtype="float64", seed=s) for s in (1, 2)]
    expected = [backends.to_numpy(net.params[1][0]) for net in nets]
    target = tmp_path / "model.xpmlp"
    save(nets[0], target)
    target.chmod(0o600)
    script = tmp_path / "saver.py"
    script.write_text(_SAVER.format(sizes=sizes))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(xpmlp.__file__)),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, str(script), str(target), "anonymous" if save_path else "named"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    rng = random.Random(5)
    seen_orphans = 0
    try:
        for _ in range(12):
            server.stdin.write(b"go\n")
            server.stdin.flush()
            worker = int(server.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.6))
            os.kill(worker, signal.SIGKILL)
            status = int(server.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            back = load(target)  # always the old or the new complete file
            W2 = backends.to_numpy(back.params[1][0])
            assert any(np.array_equal(W2, e) for e in expected)
            assert stat.S_IMODE(target.stat().st_mode) == 0o600
            seen_orphans = max(seen_orphans, len(_orphans(tmp_path, keep=("model.xpmlp", "saver.py"))))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
    if save_path:  # a name exists only between link and rename, for microseconds
        assert seen_orphans <= 1
    else:
        assert seen_orphans > 0  # the kills did land inside writes: the sweep has work to do
    old = time.time() - 60  # the orphans' age, as if the next save came a minute later
    for name in _orphans(tmp_path, keep=("model.xpmlp", "saver.py")):
        os.utime(tmp_path / name, (old, old))
    save(nets[1], target)
    assert _orphans(tmp_path, keep=("model.xpmlp", "saver.py")) == []
    np.testing.assert_array_equal(backends.to_numpy(load(target).params[1][0]), expected[1])


def test_hostile_files_are_refused_whatever_backend_is_asked_for(backend, tmp_path, clf_copy, net_file):
    """The checks run on the host before any backend is touched: the same refusals everywhere."""
    nan = tmp_path / "nan.xpmlp"
    net = xpmlp.MLP([3, 2], ["identity"], dtype="float32", seed=0)
    W, b = (backends.to_numpy(a).copy() for a in net.params[0])
    W[1, 1] = np.nan
    net.params = [(W, b)]
    save(net, nan)
    _rewrite_header(clf_copy, lambda h: h["state"].update(classes_=["cat", "dog", "emu", "fox"]))
    entries = _members(net_file)
    entries[1].update(raw=_zero_bomb(entries[1]["data"][:128], GIB), size=128 + GIB)
    _write_zip(net_file, entries)
    for path, fragment in ((nan, "holds 1 NaN"), (clf_copy, "4 classes_ need 4 output(s)"),
                           (net_file, "refused before inflating")):
        _refuse(path, fragment, backend=backend.name, device=backend.device)
    back = load(nan, backend=backend.name, device=backend.device, allow_nonfinite=True)
    np.testing.assert_array_equal(backends.to_numpy(back.params[0][0]), W)  # NaN where it was, bit for bit
