"""Reading a model file from anywhere safely: regular files only, bounded memory, every
field checked (see "What loading guarantees" in the package docstring).
"""

from __future__ import annotations

import collections
import io as _stdio
import json
import math
import os
import stat
import struct
import zipfile
import zlib

import numpy as np

from ._format import (DEFAULT_MAX_SIZE, FORMAT_NAME, FORMAT_VERSION, ModelFileError, _CHUNK, _HEADER_SCHEMA, _MAX_DEPTH,
                      _MAX_DIRECTORY, _MAX_HEADER, _MAX_NPY_HEADER, _MAX_RATIO, _META_MEMBER, _NETWORK_SCHEMA,
                      _RATIO_SLACK, _STATE_SCHEMA, _STATE_SCHEMA_OF_KIND, _SchemaError, _conform, _file_kind,
                      _header_network, _nesting, _within_ratio)
from ._state import _array_shapes
from ._checks import _check_loadable, _check_state, _estimator_class


# ------------------------------------------------------------------------- loading
def _check_regular(path: str, st: os.stat_result, max_size: int | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(path, "is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(path, f"is {_file_kind(st)}, not a model file: xpmlp reads models from regular files only")
    if max_size is not None and st.st_size > max_size:
        raise ModelFileError(path, f"the file is {st.st_size} bytes, over the limit of {max_size} bytes; "
                                   f"pass max_size= (bytes, or None for no limit) to load a model this large")
    if st.st_size == 0:
        raise ModelFileError(path, "the file is empty (0 bytes): not an xpmlp model (was a save interrupted?)")


def _open_regular(path: str, max_size: int | None):
    """Open ``path`` for reading if it is a regular file within ``max_size``: ``(file, size)``.

    Checked before opening (a FIFO without a writer would block ``open``) and again
    on the open descriptor (the path could have been swapped in between).
    """
    _check_regular(path, os.stat(path), max_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        _check_regular(path, st, max_size)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


class _ReadTooLarge(Exception):
    """A single read of the model file asked for more than ``_MAX_DIRECTORY`` bytes."""


class _CappedFile:
    """The model file for :mod:`zipfile`, refusing any single read over a cap.

    ``zipfile`` reads the whole central directory with one read of the size the
    archive claims; the cap stops a claim of gigabytes before it is allocated. The
    loader itself reads members in pieces below the cap.
    """

    def __init__(self, raw, size: int, cap: int):
        self._raw, self._size, self._cap = raw, size, cap
        self.seekable = raw.seekable

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = max(0, self._size - self._raw.tell())
        if n > self._cap:
            raise _ReadTooLarge(n)
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:  # the loader closes the real file
        pass


# What zipfile and zlib raise on a damaged archive (NotImplementedError: an unknown method
# or flag; RuntimeError: encrypted; ValueError: names that do not decode, bad fields).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError,
               struct.error, OverflowError)
_ALLOWED_FLAGS = 0x0800 | 0x0008 | 0x0006  # UTF-8 names, data descriptor, deflate options


def _open_zip(path: str, raw, size: int) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(_CappedFile(raw, size, _MAX_DIRECTORY))
    except _ReadTooLarge as exc:
        raise ModelFileError(path, f"corrupt model file: its ZIP directory claims {exc.args[0]} bytes, over the "
                                   f"{_MAX_DIRECTORY} an xpmlp model needs") from None
    except _ZIP_ERRORS as exc:
        raise ModelFileError(path, f"truncated or corrupt model file ({type(exc).__name__}: {exc})") from None


def _check_members(path: str, archive: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """The members by name, after the checks that need no inflating: each named once,
    unencrypted, stored or deflated, and all together within the ratio bound."""
    infos = archive.infolist()
    members = {}
    for info in infos:
        if info.filename in members:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} appears twice")
        if info.flag_bits & ~_ALLOWED_FLAGS:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} has flags "
                                       f"{info.flag_bits:#06x} (encrypted or patched); xpmlp writes none of these")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} uses compression method "
                                       f"{info.compress_type}; xpmlp models are stored or deflated")
        members[info.filename] = info
    if _META_MEMBER not in members:
        names = list(members)
        shown = names[:8] + (["..."] if len(names) > 8 else [])
        raise ModelFileError(path, f"not an xpmlp model file: a ZIP/.npz archive without {_META_MEMBER!r} "
                                   f"(its members: {shown})")
    declared = sum(info.file_size for info in infos)
    if not _within_ratio(declared, file_size):
        raise ModelFileError(path, f"corrupt or hostile model file: its members declare {declared} bytes in all, "
                                   f"more than {_MAX_RATIO} times the file's {file_size} bytes (+{_RATIO_SLACK}) "
                                   f"that an xpmlp model inflates to; refused before inflating")
    if members[_META_MEMBER].file_size > _MAX_HEADER:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} declares {members[_META_MEMBER].file_size} "
                                   f"bytes, over the limit of {_MAX_HEADER}")
    return members


def _read_exact(path: str, fh, n: int, what: str) -> bytes:
    """``n`` bytes of an open member, read in pieces; a short member is corrupt."""
    parts, left = [], n
    while left > 0:
        part = fh.read(min(left, _CHUNK))
        if not part:
            raise ModelFileError(path, f"corrupt model file: {what} ends early")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _no_duplicate_keys(pairs):
    found = dict(pairs)
    if len(found) != len(pairs):
        twice = sorted(key for key, count in collections.Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"duplicated key(s) {twice[:5]}")
    return found


def _parse_header(path: str, raw: bytes) -> dict:
    depth = _nesting(raw)
    if depth > _MAX_DEPTH:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} nests {depth} deep, over the limit of "
                                   f"{_MAX_DEPTH}")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"corrupt model file: cannot read {_META_MEMBER} ({exc})") from None


def _read_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    try:
        with archive.open(info) as fh:
            raw = _read_exact(path, fh, info.file_size, _META_MEMBER)
            trailing = fh.read(1)
    except _ZIP_ERRORS as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(path, f"corrupt model file: cannot read {_META_MEMBER} "
                                   f"({type(exc).__name__}: {exc})") from None
    if trailing:
        raise ModelFileError(path, f"corrupt model file: {_META_MEMBER} is longer than its declared size")
    return _parse_header(path, raw)


def _check_header(path: str, header) -> None:
    """The header's format and version, then every field against the schema."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ModelFileError(path, f"not an xpmlp model file (format {found!r}, expected {FORMAT_NAME!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"corrupt model file: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        from .. import __version__

        written_by = header.get("xpmlp_version")
        written_by = written_by if isinstance(written_by, str) else "?"
        raise ModelFileError(path, f"written by xpmlp {written_by[:40]} in format version {version}, "
                                   f"but this xpmlp ({__version__}) reads versions up to {FORMAT_VERSION}: "
                                   f"upgrade xpmlp (pip install -U xpmlp) to load it")
    schema = dict(_HEADER_SCHEMA)
    kind = header.get("kind")
    if kind == "MLP":
        schema["network"] = _NETWORK_SCHEMA
    elif isinstance(kind, str):
        _estimator_class(path, kind)  # an unknown kind, before its fields
        schema["state"] = {**_STATE_SCHEMA, **_STATE_SCHEMA_OF_KIND.get(kind, {})}
    try:
        _conform(header, schema, "")
    except _SchemaError as exc:
        raise ModelFileError(path, f"corrupt model file: {exc}") from None


def _expected_arrays(path: str, header: dict, members: dict[str, zipfile.ZipInfo]) -> dict[str, tuple]:
    """``{name: (dtype, shape, member info)}`` of the arrays the network needs, checked
    against the manifest and the archive's members (no extra or missing member, each
    member's declared size right for its array) before anything is inflated."""
    network = _header_network(header)
    dtype = np.dtype(network["dtype"])
    sizes = network["sizes"]
    manifest = header["arrays"]
    needed = _array_shapes(sizes)
    extra = sorted(set(manifest) - set(needed))
    if extra:
        raise ModelFileError(path, f"corrupt model file: the header lists arrays {extra[:8]} that a network of "
                                   f"sizes {sizes} does not have")
    expected = {}
    for name, shape in needed.items():
        if name not in manifest:
            raise ModelFileError(path, f"cannot rebuild the network: array {name!r} of layer {name[1:]} is missing")
        entry = manifest[name]
        if entry["dtype"] != dtype.str or tuple(entry["shape"]) != shape:
            raise ModelFileError(path, f"cannot rebuild the network: array {name!r} is "
                                       f"{_dtype_text(entry['dtype'])} {tuple(entry['shape'])}; sizes {sizes} and "
                                       f"dtype {dtype.name} require {dtype.name} {shape}")
        info = members.get(f"{name}.npy")
        if info is None:
            raise ModelFileError(path, f"corrupt model file: array {name!r} is listed but missing")
        nbytes = math.prod(shape) * dtype.itemsize
        if not nbytes + 10 <= info.file_size <= nbytes + _MAX_NPY_HEADER:
            raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} declares {info.file_size} "
                                       f"bytes, but array {name!r} ({dtype.name} {shape}) takes {nbytes} bytes "
                                       f"and a header of at most {_MAX_NPY_HEADER}; refused before inflating")
        expected[name] = (dtype, shape, info)
    unexpected = sorted(set(members) - {_META_MEMBER} - {f"{name}.npy" for name in expected})
    if unexpected:
        raise ModelFileError(path, f"corrupt model file: unexpected members {unexpected[:8]}")
    return expected


def _dtype_text(text: str) -> str:
    try:
        return np.dtype(text).name
    except (TypeError, ValueError):
        return repr(text)


def _read_npy_header(path: str, fh, name: str, total: int) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header bytes)`` of a member's .npy header, read in
    full (at most ``_MAX_NPY_HEADER`` bytes) before numpy's parser sees it."""
    what = f"array {name!r}"
    start = _read_exact(path, fh, 8, what)
    if start[:6] != b"\x93NUMPY" or start[6:8] not in (b"\x01\x00", b"\x02\x00"):
        raise ModelFileError(path, f"corrupt model file: {what} is not a .npy array of format version 1 or 2")
    width = 2 if start[6] == 1 else 4
    length_bytes = _read_exact(path, fh, width, what)
    length = int.from_bytes(length_bytes, "little")
    if 8 + width + length > min(_MAX_NPY_HEADER, total):
        raise ModelFileError(path, f"corrupt model file: {what} has a .npy header of {length} bytes")
    text = _read_exact(path, fh, length, what)
    parse = np.lib.format.read_array_header_1_0 if width == 2 else np.lib.format.read_array_header_2_0
    try:
        shape, fortran, dtype = parse(_stdio.BytesIO(length_bytes + text), max_header_size=_MAX_NPY_HEADER)
    except Exception as exc:  # numpy's parser of these few bytes fails in many ways (even tokenize.TokenError)
        raise ModelFileError(path, f"corrupt model file: cannot read the .npy header of {what} "
                                   f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return shape, fortran, dtype, 8 + width + length


def _read_array(path: str, archive: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple,
                info: zipfile.ZipInfo, allow_nonfinite: bool) -> np.ndarray:
    """One array, inflated in pieces into an array of its declared shape, never past its size."""
    try:
        with archive.open(info) as fh:
            got_shape, fortran, got_dtype, header_size = _read_npy_header(path, fh, name, info.file_size)
            if got_dtype.hasobject:
                raise ModelFileError(path, f"refused: array {name!r} holds Python objects ({got_dtype}), which only "
                                           f"unpickling could read; xpmlp never unpickles")
            if got_dtype != dtype or tuple(got_shape) != shape or fortran:
                raise ModelFileError(path, f"corrupt model file: array {name!r} is {got_dtype.str} {list(got_shape)}"
                                           f"{' (Fortran order)' if fortran else ''}, the header says {dtype.str} "
                                           f"{list(shape)}")
            a = np.empty(shape, dtype=dtype)
            nbytes = a.nbytes
            if header_size + nbytes != info.file_size:
                raise ModelFileError(path, f"corrupt model file: the member {info.filename!r} declares "
                                           f"{info.file_size} bytes, its .npy header and data take "
                                           f"{header_size + nbytes}")
            view = memoryview(a.reshape(-1).view(np.uint8))
            done = 0
            while done < nbytes:
                part = fh.read(min(_CHUNK, nbytes - done))
                if not part:
                    raise ModelFileError(path, f"corrupt model file: array {name!r} ends early")
                view[done:done + len(part)] = part
                done += len(part)
            if fh.read(1):
                raise ModelFileError(path, f"corrupt model file: array {name!r} is longer than its declared size")
    except _ZIP_ERRORS as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(path, f"corrupt model file: cannot read array {name!r} ({type(exc).__name__}: {exc})") \
            from None
    if not allow_nonfinite and a.dtype.kind == "f":
        flat = a.reshape(-1)
        bad = sum(int(np.count_nonzero(~np.isfinite(flat[i:i + _CHUNK]))) for i in range(0, flat.size, _CHUNK))
        if bad:
            raise ModelFileError(path, f"array {name!r} holds {bad} NaN or infinite value(s): such a model predicts "
                                       f"NaN. Refused; pass allow_nonfinite=True to load it anyway")
    return a


def _read_archive(path: str, *, arrays: bool, max_size: int | None,
                  allow_nonfinite: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check the header (and the arrays if asked); every file problem is a ModelFileError."""
    raw, size = _open_regular(path, max_size)
    with raw:
        if raw.read(2) != b"PK":
            raise ModelFileError(path, "not an xpmlp model file (it is not a ZIP archive; xpmlp models are "
                                       "written by xpmlp.save or `xpmlp train --save`)")
        with _open_zip(path, raw, size) as archive:
            members = _check_members(path, archive, size)
            header = _read_header(path, archive, members[_META_MEMBER])
            _check_header(path, header)
            _check_state(path, header)
            expected = _expected_arrays(path, header, members)
            host = {}
            if arrays:
                _check_loadable(path, header)  # before any array is allocated
                for name, (dtype, shape, info) in expected.items():
                    host[name] = _read_array(path, archive, name, dtype, shape, info, allow_nonfinite)
    return header, host


def read_metadata(path, *, max_size: int | None = DEFAULT_MAX_SIZE) -> dict:
    """The header of a model file, without loading its arrays.

    The file is checked as by :func:`load` (see the module docstring), except
    that its arrays are not read and its activations and loss need not be
    registered here.

    Parameters
    ----------
    path : str or os.PathLike
    max_size : int or None, optional
        The largest file accepted, in bytes (default 4 GiB); ``None``: no limit.

    Returns
    -------
    dict
        The decoded ``xpmlp.json`` member: ``format_version``, ``xpmlp_version``,
        ``kind``, ``saved_on``, ``network``/``state``, ``metadata``, ...

    Raises
    ------
    ModelFileError
        If the file is not a readable xpmlp model.
    """
    return _read_archive(os.fspath(path), arrays=False, max_size=max_size)[0]
