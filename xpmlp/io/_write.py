"""Saving: a model to the archive's members (:func:`_build_archive`), written atomically and
durably (:func:`save`; see "What saving guarantees" in the package docstring).
"""

from __future__ import annotations

import errno
import io as _stdio
import json
import os
import re
import secrets
import stat
import time
import zipfile

import numpy as np

from .. import backends
from ._format import (FORMAT_NAME, FORMAT_VERSION, _MAX_DEPTH, _MAX_DIRECTORY, _MAX_HEADER, _META_MEMBER, _ZIP_TIME,
                      _file_kind, _nesting, _within_ratio)
from ._state import mlp_state

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


# Temporary files of saves (see "What saving guarantees").
_TEMP_TAG = ".xpmlp-tmp-"
_TEMP_NAME = re.compile(r"\..+" + re.escape(_TEMP_TAG) + r"[0-9a-f]{16}")
_SWEEP_UNLOCKED_AFTER_S = 10.0
_SWEEP_UNLOCKABLE_AFTER_S = 3600.0
#: Whether saves may use Linux's O_TMPFILE (the tests turn it off to exercise the named path).
_USE_O_TMPFILE = True


# ------------------------------------------------------------------------ encoding
def _encode_array(name: str, a) -> tuple[np.ndarray, dict]:
    """A pickle-free host array and its manifest entry."""
    a = np.asarray(backends.to_numpy(a))
    restore = None
    if a.dtype == object:
        if not all(isinstance(v, str) for v in a.ravel().tolist()):
            kinds = sorted({type(v).__name__ for v in a.ravel().tolist()})
            raise TypeError(f"cannot save array {name!r}: it is an object array holding {kinds}; "
                            f"only numbers, booleans and strings can be saved without pickle")
        a = a.astype(str)
        restore = "object"
    elif a.dtype.kind not in "biufcU":
        raise TypeError(f"cannot save array {name!r} of dtype {a.dtype}; "
                        f"expected numbers, booleans or strings")
    entry = {"dtype": a.dtype.str, "shape": list(a.shape)}
    if restore:
        entry["restore"] = restore
    return a, entry


def _json_default(value):
    """JSON for the NumPy scalars and small arrays that estimator parameters may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot save {type(value).__name__} {value!r} in a model file: not JSON-serialisable")


def _describe_object(obj) -> tuple[dict, dict[str, np.ndarray]]:
    """The file's meta (without the array manifest) and arrays for a network or estimator."""
    from ..network import MLP

    if isinstance(obj, MLP):
        network, arrays = mlp_state(obj)
        meta = {"kind": "MLP", "network": network,
                "saved_on": {"backend": obj.backend, "device": backends.device_name(obj.device)}}
        return meta, arrays
    get_state = getattr(obj, "_get_state", None)
    if get_state is None:
        raise TypeError(f"xpmlp.save expects an xpmlp.MLP or an xpmlp estimator (MLPClassifier, MLPRegressor), "
                        f"got {type(obj).__name__}")
    state, arrays = get_state()
    meta = {"kind": type(obj).__name__, "state": state}
    net = getattr(obj, "net_", None)
    if net is not None:
        meta["saved_on"] = {"backend": net.backend, "device": backends.device_name(net.device)}
    return meta, dict(arrays)


def _build_archive(obj, metadata: dict | None) -> list[tuple[str, bytes]]:
    """The members of the file, in order, as bytes (nothing is written yet).

    Raises ``ValueError`` for a model whose file the loader would refuse (a header
    over its size or nesting limit, too many members).
    """
    from .. import __version__

    meta, arrays = _describe_object(obj)
    manifest, payloads = {}, []
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or "/" in name or name == _META_MEMBER:
            raise ValueError(f"invalid array name {name!r} in a model's state")
        host, manifest[name] = _encode_array(name, a)
        buf = _stdio.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(host), allow_pickle=False)
        payloads.append((f"{name}.npy", buf.getvalue()))
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "xpmlp_version": __version__,
              **meta, "arrays": manifest, "metadata": dict(metadata or {})}
    text = json.dumps(header, default=_json_default, indent=1, sort_keys=True, allow_nan=False)
    members = [(_META_MEMBER, text.encode("utf-8"))] + payloads
    if len(members[0][1]) > _MAX_HEADER:
        raise ValueError(f"the model's header would be {len(members[0][1])} bytes, over the {_MAX_HEADER} that "
                         f"xpmlp.load accepts: is the metadata too large?")
    depth = _nesting(members[0][1])
    if depth > _MAX_DEPTH:
        raise ValueError(f"the model's header would be nested {depth} deep, over the {_MAX_DEPTH} that "
                         f"xpmlp.load accepts: is the metadata nested too deep?")
    directory = sum(46 + len(name.encode()) + 28 for name, _ in members) + 22
    if directory > _MAX_DIRECTORY:
        raise ValueError(f"a model of {len(arrays)} arrays needs a ZIP directory of about {directory} bytes, "
                         f"over the {_MAX_DIRECTORY} that xpmlp.load accepts")
    return members


# -------------------------------------------------------------------------- saving
def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` without waiting: True if taken, False if another
    process holds it, None where locks do not work here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def _temp_path(directory: str, base: str) -> str:
    return os.path.join(directory, f".{base}{_TEMP_TAG}{secrets.token_hex(8)}")


def _sweep_orphans(directory: str) -> None:
    """Remove the temporary files that killed saves left in ``directory``.

    A temporary file is an orphan when its writer's lock is free (the writer died,
    or finished and renamed it away) and it is older than a few seconds; where locks
    do not work, when nobody has written to it for an hour. Files of other users
    and anything that is not a regular file are left alone.
    """
    try:
        with os.scandir(directory) as scan:
            entries = [e for e in scan if _TEMP_NAME.fullmatch(e.name)]
    except OSError:
        return
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            age = time.time() - st.st_mtime
            if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid) \
                    or age < _SWEEP_UNLOCKED_AFTER_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            locked = _try_lock(fd)
            if locked is False or (locked is None and age < _SWEEP_UNLOCKABLE_AFTER_S):
                continue
            if os.fstat(fd).st_ino == os.lstat(entry.path).st_ino:  # still the file we locked
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


class _NoAnonymousFile(Exception):
    """O_TMPFILE is not usable here: save under a temporary name instead."""


def _write_zip(fh, members: list[tuple[str, bytes]], compression: int) -> None:
    with zipfile.ZipFile(fh, "w", compression=compression) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _write_members(fd: int, members: list[tuple[str, bytes]]) -> None:
    """The archive into ``fd``, deflated unless that breaks the ratio bound; flushed and synced."""
    with os.fdopen(fd, "wb", closefd=False) as fh:
        _write_zip(fh, members, zipfile.ZIP_DEFLATED)
        if not _within_ratio(sum(len(data) for _, data in members), fh.tell()):
            fh.seek(0)
            fh.truncate()
            _write_zip(fh, members, zipfile.ZIP_STORED)
        fh.flush()
        os.fsync(fh.fileno())


def _create_temp(directory: str, base: str, anonymous: bool) -> tuple[int, str | None]:
    """A new file for the archive (mode 0o666 less the umask): ``(fd, None)`` for an
    anonymous O_TMPFILE file, ``(fd, path)`` for a named temporary file."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if anonymous:
        try:
            return os.open(directory, flags | os.O_TMPFILE, 0o666), None
        except OSError as exc:  # EOPNOTSUPP, EISDIR (old kernels), EINVAL: no O_TMPFILE on this filesystem
            raise _NoAnonymousFile from exc
    while True:
        tmp = _temp_path(directory, base)
        try:
            return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _link_anonymous(fd: int, directory: str, base: str, target_exists: bool) -> str | None:
    """Give the complete anonymous file a name: the target itself if there is none
    (then None is returned), else a temporary name to rename over it."""
    source = f"/proc/self/fd/{fd}"
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))

    def link(name: str) -> None:
        # linkat(AT_FDCWD, source, dir_fd, name, AT_SYMLINK_FOLLOW): a dir_fd makes os.link call
        # linkat, which follows the /proc link to the file; its plain link() would fail (EXDEV).
        os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=True)

    try:
        if not target_exists:
            try:
                link(base)
                return None
            except FileExistsError:  # created meanwhile: replace it like any existing file
                pass
            except OSError as exc:
                raise _NoAnonymousFile from exc
        while True:
            tmp = _temp_path(directory, base)
            try:
                link(os.path.basename(tmp))
                return tmp
            except FileExistsError:
                continue
            except OSError as exc:
                raise _NoAnonymousFile from exc
    finally:
        os.close(dir_fd)


def _keep_mode_and_owner(fd: int, tmp: str | None, previous: os.stat_result) -> None:
    """Give the new file the permission bits, and where allowed the owner, of the one it replaces."""
    mode = stat.S_IMODE(previous.st_mode) & 0o777
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    elif tmp is not None:  # Windows: only the read-only bit means anything there
        os.chmod(tmp, mode)
    now = os.fstat(fd)
    if hasattr(os, "fchown") and (now.st_uid, now.st_gid) != (previous.st_uid, previous.st_gid):
        try:
            os.fchown(fd, previous.st_uid, previous.st_gid)
        except OSError:  # only root may give a file away; a group only to its members
            pass


def _save_once(members, directory: str, base: str, target: str, previous: os.stat_result | None,
               anonymous: bool) -> None:
    fd, tmp = _create_temp(directory, base, anonymous)
    try:
        _try_lock(fd)  # held until the rename: a sweep leaves this file alone
        _write_members(fd, members)
        if previous is not None:
            _keep_mode_and_owner(fd, tmp, previous)
        if tmp is None:
            tmp = _link_anonymous(fd, directory, base, previous is not None)
        if tmp is not None:
            os.replace(tmp, target)
            tmp = None
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    finally:
        os.close(fd)


def _anonymous_files_work() -> bool:
    return _USE_O_TMPFILE and hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def save(obj, path, *, metadata: dict | None = None) -> None:
    """Save a network or a fitted estimator to ``path``, atomically.

    See the module docstring for what is guaranteed (the previous file is never
    lost, no temporary file survives a kill, permissions are kept).

    Parameters
    ----------
    obj : xpmlp.MLP or estimator
        An :class:`xpmlp.MLP` on any backend, or an estimator offering
        ``_get_state()`` (:class:`xpmlp.MLPClassifier`, :class:`xpmlp.MLPRegressor`).
    path : str or os.PathLike
        The file to write (used as given; ``.xpmlp`` is the suggested extension).
        An existing file is replaced only once the new one is complete, and
        keeps its permission bits.
    metadata : dict, optional
        Extra JSON-serialisable information stored with the model (the
        ``xpmlp`` command keeps the CSV's column names here); read it back
        with :func:`read_metadata`.

    Raises
    ------
    TypeError
        If ``obj`` cannot be saved, or ``metadata`` is not JSON-serialisable.
    ValueError
        If the file would be beyond what :func:`load` accepts (metadata over
        4 MiB or nested over 32 deep).
    OSError
        If the file cannot be written (``IsADirectoryError`` for a directory,
        ``FileExistsError`` for an existing FIFO, device or socket); the
        previous file, if any, is untouched.
    """
    path = os.fspath(path)
    members = _build_archive(obj, metadata)  # fails before anything touches the disk
    target = os.path.realpath(path)  # through a symbolic link: replace the file it points to
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path}: the directory {directory} does not exist")
    try:
        previous = os.stat(target)
    except FileNotFoundError:
        previous = None
    if previous is not None and stat.S_ISDIR(previous.st_mode):
        raise IsADirectoryError(f"{path} is a directory; give a file name such as {os.path.join(path, 'model.xpmlp')}")
    if previous is not None and not stat.S_ISREG(previous.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a regular file ({_file_kind(previous)}); "
                                            f"xpmlp.save replaces regular files only", path)
    _sweep_orphans(directory)
    base = os.path.basename(target)
    if _anonymous_files_work():
        try:
            _save_once(members, directory, base, target, previous, anonymous=True)
            _fsync_directory(directory)
            return
        except _NoAnonymousFile:
            pass
    _save_once(members, directory, base, target, previous, anonymous=False)
    _fsync_directory(directory)
