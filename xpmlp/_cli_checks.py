"""What the ``xpmlp`` command checks before it does any work, each failure a message that names the fix.

Option values with a "did you mean" (:func:`check_choice`), output paths
(:func:`check_output_path`: before training, not after it), and whether the
backend and device asked for exist here (:func:`check_backend`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Sequence

__all__ = ["CommandError", "UsageError", "check_choice", "check_output_path", "check_backend", "one_line"]


class CommandError(Exception):
    """A problem the user can fix, reported as one line (never with a traceback); exit status 1."""


class UsageError(CommandError):
    """A bad option value found after parsing (exit status 2, like argparse's own errors)."""


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def check_choice(option: str, value: str, choices: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``choices``, else a UsageError with the closest names."""
    if value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise UsageError(f"argument {option}: unknown {what} {value!r}{hint} (expected one of {sorted(choices)})")


# ---------------------------------------------------------------------------- paths
#: Extensions that say a file is something other than a model (a typo'd --save would overwrite it).
NOT_A_MODEL = (".csv", ".tsv", ".txt", ".json", ".png", ".jpg", ".jpeg", ".pdf", ".svg", ".py")


def check_output_path(path: str, option: str, *, example: str, in_place: bool = True,
                      keep: Sequence[str] = ()) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Parameters
    ----------
    path : str
        The file to be written.
    option : str
        The option that gave it (``--save``), for the message.
    example : str
        A file name to suggest (``model.xpmlp``).
    in_place : bool
        Whether the file is written in place (then an existing file must be
        writable); ``False`` for a file replaced by a rename (``xpmlp.save``).
    keep : sequence of str
        Input files that must not be overwritten (the data, the model).
    """
    if not path:
        raise UsageError(f"argument {option}: expected a file name such as {example}, got ''")
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory; give a file name such as "
                           f"{os.path.join(path, example)}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"{option} {path}: the directory {directory} does not exist; create it first "
                           f"(mkdir -p {directory})")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: cannot write into the directory {directory} (permission denied)")
    if in_place and os.path.exists(path) and not os.access(path, os.W_OK):
        raise CommandError(f"{option} {path}: the file exists and is not writable (permission denied)")
    for other in keep:
        if other and os.path.exists(other) and os.path.exists(path) and os.path.samefile(path, other):
            raise CommandError(f"{option} {path}: that is an input file of this command; writing there would "
                               f"destroy it (give another name, e.g. {example})")


def check_model_path(path: str, *, keep: Sequence[str] = ()) -> None:
    """:func:`check_output_path` for ``--save``, which also refuses the extension of a data or image file."""
    ext = os.path.splitext(path)[1].lower()
    if ext in NOT_A_MODEL:
        stem = os.path.splitext(path)[0]
        raise UsageError(f"argument --save: {path!r} ends in {ext!r}, which names another kind of file; a model "
                         f"file is a ZIP, conventionally {stem}.xpmlp")
    check_output_path(path, "--save", example="model.xpmlp", in_place=False, keep=keep)


# ------------------------------------------------------------------ backends, devices
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_backends() -> tuple[list[str], list[str]]:
    """``(backends that see a CUDA device here, why each other CUDA backend does not)``."""
    from . import backends

    have, why = [], []
    if _installed("cupy"):
        usable, info, _ = backends.probe("cupy")
        (have.append("cupy") if usable else why.append(f"cupy: {info}"))
    else:
        why.append("cupy: not installed")
    if _installed("torch"):
        import torch

        if torch.cuda.is_available():
            have.append("torch")
        else:
            build = " (a CPU-only build)" if getattr(torch.version, "cuda", None) is None else ""
            why.append(f"torch {torch.__version__}: installed, but sees no CUDA device{build}")
    else:
        why.append("torch: not installed")
    return have, why


def _cuda_hint(backend: str, device: str) -> str:
    have, why = cuda_backends()
    if have:
        kind, colon, index = str(device).partition(":")
        cuda = f"cuda{colon}{index}"
        options = " or ".join(f"--backend {name} --device {cuda}" for name in have)
        return f"the {backend} backend has no CUDA device; for the GPU use {options}"
    return f"no installed backend sees a CUDA device here ({'; '.join(why)})"


def check_backend(backend: str | None, device: str | None) -> None:
    """Make sure ``--backend`` is installed and usable and ``--device`` exists on it.

    ``--backend cupy`` without a GPU says that no GPU/CUDA device is visible (and keeps
    the install command only when CuPy is missing); ``--device cuda`` on a backend
    without CUDA names the installed backends that have it.
    """
    from . import backends

    name = backend or "numpy"  # the command's data are NumPy arrays: backend=None computes there
    if name == "auto":
        return
    if name == "cupy":
        usable, info, _ = backends.probe("cupy")
        if not usable:
            if not _installed("cupy"):
                raise CommandError(f"--backend cupy: {info}; CuPy computes on an NVIDIA GPU: without one use "
                                   f"--backend numpy (or --backend auto, which takes the GPU only when there is one)")
            raise CommandError(f"--backend cupy: CuPy is installed, but no GPU/CUDA device is visible here "
                               f"({info}); check nvidia-smi and CUDA_VISIBLE_DEVICES, or use --backend numpy "
                               f"(or --backend auto, which takes the GPU only when there is one)")
    xp = backends.get_namespace(name)  # an ImportError with the install command
    if device is None:
        return
    try:
        backends.resolve_device(xp, device)
    except Exception as exc:  # torch says AssertionError/RuntimeError for a device it lacks
        reason = one_line(exc)
        message = f"--device {device}: {reason}" + ("" if repr(name) in reason else f" (backend {name!r})")
        if str(device).split(":")[0] in ("cuda", "gpu") and name != "cupy":
            message += f"; {_cuda_hint(name, device)}"
        raise CommandError(message) from None
