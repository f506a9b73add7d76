"""Saving and loading models in a safe, single-file format (no pickle anywhere).

``xpmlp.save(obj, path)`` writes an :class:`xpmlp.MLP` or a fitted estimator
(:class:`xpmlp.MLPClassifier`, :class:`xpmlp.MLPRegressor`);
``xpmlp.load(path, backend=None, device=None)`` gives it back.

The file format (version 1)
---------------------------
A ZIP archive, readable by ``numpy.load(path, allow_pickle=False)`` like an
``.npz`` file (the suggested extension is ``.xpmlp``). Its members:

``xpmlp.json`` (first member, UTF-8 JSON)
    ``{"format": "xpmlp", "format_version": 1, "xpmlp_version": "0.1.0",
    "kind": "MLP" | "MLPClassifier" | ..., "saved_on": {"backend", "device"},
    "network": {...} (for an MLP), "state": {...} (for an estimator: its
    ``_get_state()`` meta), "arrays": {name: {"dtype", "shape"}},
    "metadata": {...} (free JSON given to :func:`save`)}``.
    A network is described by ``sizes``, ``activations`` (``[{"name",
    "config"}]``), ``loss``, ``dtype`` and ``follows_arrays``. An estimator's
    ``state`` is what its ``_get_state()`` gives: the class name, ``get_params()``,
    the architecture (``sizes``, ``activations``, ``activation_configs``,
    ``loss``, ``dtype``), the fitted attributes (``loss_curve_``, ``n_iter_``, ...)
    and, for a classifier, ``classes_`` as a JSON list with its NumPy dtype
    string ``classes_dtype`` (ints, floats and bools come back with their dtype,
    strings as unicode strings, also when they were an object array).
``<name>.npy`` (one per array)
    Written by :func:`numpy.lib.format.write_array` with ``allow_pickle=False``.
    The arrays are the network's weights ``W1, b1, ..., WL, bL`` in the column
    layout (``W[l]: (n[l], n[l-1])``, ``b[l]: (n[l], 1)``), in its dtype.

Members are deflated, except in a model whose arrays would shrink more than
32 times (all-zero weights, say): that file is written uncompressed, so that
every file :func:`save` writes passes the loader's ratio check below.

What loading guarantees
-----------------------
:func:`load` and :func:`read_metadata` are meant for files from anywhere.
Every problem with a file ends in :class:`ModelFileError`, a ``ValueError``
that names the path and the problem (a missing file is ``FileNotFoundError``,
an unreadable one ``PermissionError``, as usual). No code from a file is
ever run: nothing is unpickled (an array of Python objects is refused before
it is read) and only xpmlp's own classes are instantiated (``kind`` is looked
up among ``MLP`` and the public estimators of :mod:`xpmlp.estimators`).

*Only regular files are opened.* The path is checked with :func:`os.stat`
before anything is opened: a directory, FIFO, socket or device
(``/dev/zero``) is refused at once, without blocking; the file is then opened
non-blocking and checked again (it cannot be swapped for a FIFO in between).
A file larger than ``max_size`` bytes (default :data:`DEFAULT_MAX_SIZE`,
4 GiB; ``None`` for no limit) is refused before it is read.

*Memory is bounded by the model the header declares, and the header cannot
declare more than the file can hold.* Before anything is inflated:
the ZIP's central directory is at most 1 MiB (read through a reader that
refuses any single read above that, so a directory that claims more is never
allocated); members must be unencrypted, stored or deflated, and named once
each (a duplicated member is refused); the declared uncompressed sizes of all
members together are at most 32 times the file's size plus 1 MiB; the
header member is at most 4 MiB and nested at most 32 deep (checked on its
text before it is parsed); every field the loader reads has the type and
range of the schema in this module (``_HEADER_SCHEMA`` and its parts); the
manifest lists exactly the arrays the network's ``sizes`` need, in its
``dtype``, and each array's member declares exactly their size (plus a
``.npy`` header of at most 4 KiB, which must give that dtype and shape before
anything is allocated). Each array is then inflated in 1 MiB pieces straight
into an array of its declared shape, never past its declared size. So a
refused file costs at most the central directory (1 MiB), the header (4 MiB
of text; parsed, about 100 MiB in the worst case) and 1 MiB of inflating;
a loaded one, in addition, about four times its arrays while the network is
built (initialised, then given the file's weights) and moved to its backend.

*Time is bounded* likewise: what is read and inflated is bounded as above,
so loading takes time proportional to the declared model; a non-regular
file is refused after one ``stat``.

*A file that loads is consistent*: the CRC-32 of every member is checked; the
arrays have the shapes and dtype the architecture needs; the activations and
loss are registered here (the message says how to register a custom one);
an estimator's fields agree with each other and with the network
(``n_features_in_``, ``n_outputs_``, the output activation and loss, the
number of ``classes_``, which are unique and sorted, ``feature_names_in_``),
and its hyperparameters pass its own validation. Weights that are NaN or
infinite are refused unless ``allow_nonfinite=True``.

``load(path)`` puts the model back on the backend and device it was saved
from when they are usable here, otherwise on NumPy with a ``RuntimeWarning``
(as unpickling does); ``backend=``/``device=`` choose explicitly.

What saving guarantees
----------------------
*The previous file is never lost*: the new archive is written to a file
without a name or with a temporary one in the target's directory, flushed and
``fsync``-ed, and only then renamed over the target (:func:`os.replace`),
which is atomic; the directory is ``fsync``-ed after. At every moment the
target is the old complete file or the new complete file.

*No temporary file survives*, even a ``SIGKILL``: on Linux the archive is
written to an anonymous file (``O_TMPFILE``), which the kernel frees if the
process dies, and only linked into the directory once complete: straight to
the target when there is none, else to a temporary name that is renamed over
the target at once. Where ``O_TMPFILE`` is not available (other systems,
some network filesystems) the archive is written under a recognisable
temporary name, ``.<target name>.xpmlp-tmp-<16 hex digits>``. The writer holds
an exclusive ``flock`` on its temporary file until the rename; the lock
dies with the process. Every save first sweeps its directory of such names
whose lock is free and that are older than 10 seconds (the lock is taken
microseconds after the file is created); where locks do not work, of those
untouched for an hour. So a kill can leave a temporary file only until the
next save into the same directory. Why both: ``O_TMPFILE`` leaves nothing to
sweep during the long write, and the sweep covers the instant between link
and rename and the systems without ``O_TMPFILE``.

*Permissions*: a new file gets the usual ``0o666`` less the umask; a file
saved over keeps its permission bits (``0o600`` stays ``0o600``) and, where
allowed, its owner and group. A symbolic link is followed: the file it
points to is replaced. Saving the same model twice gives identical bytes.

Layout
------
``_format.py`` (the format's name, version, limits, :class:`ModelFileError` and the header
schema), ``_state.py`` (a network or estimator as JSON-able meta and host arrays, and back;
the estimators' pickle hooks; :func:`on_backend_or_numpy`), ``_write.py`` (the archive's
members and the atomic, durable write), ``_read.py`` (opening and checking a file from
anywhere), ``_checks.py`` (an estimator file's fields against each other and this xpmlp),
``_load.py`` (:func:`load`).
"""

from __future__ import annotations

from ._format import DEFAULT_MAX_SIZE, FORMAT_NAME, FORMAT_VERSION, ModelFileError
from ._load import load
from ._read import read_metadata
from ._state import mlp_from_state, mlp_state
# the estimators' state and pickle hooks, which xpmlp.estimators calls
from ._state import (estimator_from_state, estimator_getstate, estimator_setstate,  # noqa: F401
                     estimator_state, on_backend_or_numpy)
from ._write import save

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_MAX_SIZE", "ModelFileError", "save", "load",
           "read_metadata", "mlp_state", "mlp_from_state"]

# documented and shown as xpmlp.io.X, wherever they are defined
for _obj in (ModelFileError, load, read_metadata, save, mlp_state, mlp_from_state):
    _obj.__module__ = __name__
del _obj
