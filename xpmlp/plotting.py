"""Training curves with matplotlib (optional: ``pip install "xpmlp[plot]"``).

>>> clf = xpmlp.MLPClassifier(early_stopping=True).fit(X, y)       # doctest: +SKIP
>>> xpmlp.plot_history(clf, "curve.png")                           # doctest: +SKIP

``xpmlp train --plot`` draws the same figure. matplotlib is imported only when a
function here is called; a figure written to a file is made without pyplot, so no
global matplotlib setting (the interactive backend) is changed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["plot_history", "check_image_path"]

PLOT_HINT = 'pip install "xpmlp[plot]"'


def _matplotlib(what: str = "plotting"):
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"{what} needs matplotlib, which is not installed ({exc}); "
                          f"install it with: {PLOT_HINT}") from None
    return matplotlib


def check_image_path(path, *, what: str = "the plot") -> str:
    """Refuse a file name whose extension matplotlib cannot write, before any work is done.

    Returns the extension (``"png"``, ``"pdf"``, ``"svg"``, ...).

    Raises
    ------
    ImportError
        Without matplotlib (with the install command).
    ValueError
        For a missing or unknown extension (the message lists the known ones).
    """
    _matplotlib(what)
    from matplotlib.figure import Figure

    formats = sorted(Figure().canvas.get_supported_filetypes())
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in formats:
        got = f"the extension '.{ext}'" if ext else "no extension"
        raise ValueError(f"{what} {os.fspath(path)!r} has {got}; give an image file name ending in one of "
                         f"{['.' + f for f in formats]}, e.g. curve.png")
    return ext


def _curves(history) -> tuple[list[float], list[float], str]:
    """``(losses, validation scores, score name)`` of an estimator, a History or a list of losses."""
    if hasattr(history, "loss_curve_"):  # a fitted estimator
        name = "accuracy" if hasattr(history, "classes_") else "R\u00b2"
        return list(history.loss_curve_), list(getattr(history, "validation_scores_", None) or []), \
            f"validation {name}"
    if hasattr(history, "loss_curve"):  # xpmlp.History
        return list(history.loss_curve), list(history.validation_scores or []), "validation score"
    if hasattr(history, "fit") and not hasattr(history, "loss_curve_"):
        raise ValueError(f"{type(history).__name__} is not fitted yet: call fit before plot_history")
    try:
        return [float(v) for v in history], [], "score"
    except TypeError:
        raise TypeError(f"plot_history takes a fitted MLPClassifier/MLPRegressor, an xpmlp.History or a "
                        f"sequence of losses, got {type(history).__name__}") from None


def plot_history(history, path=None, *, ax=None, scores: Sequence[float] | None = None,
                 score_name: str | None = None, title: str | None = None) -> Any:
    """Plot the training loss per epoch, and a score per epoch beside it when there is one.

    Parameters
    ----------
    history : estimator, xpmlp.History or sequence of float
        A fitted :class:`xpmlp.MLPClassifier`/:class:`xpmlp.MLPRegressor` (its
        ``loss_curve_`` and, with early stopping, ``validation_scores_``), the
        :class:`xpmlp.History` that :func:`xpmlp.train` returns, or the losses.
    path : str or os.PathLike, optional
        Write the figure there; the format follows the extension (``.png``, ``.pdf``,
        ``.svg``, ...). Without ``path`` and ``ax`` the figure is made with pyplot, so a
        notebook shows it.
    ax : matplotlib Axes, optional
        Draw into this Axes: the loss, and the score on a second y axis on the right.
    scores : sequence of float, optional
        Scores per epoch to draw instead of the validation scores (``xpmlp train --plot``
        passes the held-out score of every epoch).
    score_name : str, optional
        What the scores are (default: "validation accuracy", "validation R²", ...).
    title : str, optional
        A title over the figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        Without matplotlib, with the install command.
    """
    losses, found, name = _curves(history)
    scores = list(found if scores is None else scores)
    name = score_name or name
    if not losses:
        raise ValueError("there is nothing to plot: the loss curve is empty (no epoch has run)")
    if path is not None:
        check_image_path(path)
    _matplotlib()
    if ax is not None:
        fig = ax.figure
        loss_ax, score_ax = ax, (ax.twinx() if scores else None)
    else:
        panels = 2 if scores else 1
        size = (5.5 * panels, 4)
        if path is None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, panels, figsize=size, squeeze=False)
        else:
            from matplotlib.figure import Figure

            fig = Figure(figsize=size)
            axes = fig.subplots(1, panels, squeeze=False)
        loss_ax, score_ax = axes[0, 0], (axes[0, 1] if scores else None)
    _draw_loss(loss_ax, losses)
    if score_ax is not None:
        _draw_scores(score_ax, scores, name, twin=ax is not None)
    if title:
        fig.suptitle(title)
    if ax is None:
        fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


def _draw_loss(ax, losses: list[float]) -> None:
    epochs = range(1, len(losses) + 1)
    ax.plot(epochs, losses, color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_title("Training loss")
    log = min(losses) > 0 and max(losses) / min(losses) > 50
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(f"training loss (mean cost + L2 penalty){', log scale' if log else ''}")
    ax.grid(alpha=0.3)


def _draw_scores(ax, scores: list[float], name: str, *, twin: bool) -> None:
    ax.plot(range(1, len(scores) + 1), scores, color="tab:orange", label=name)
    ax.set_ylabel(name)
    if not twin:
        ax.set_xlabel("epoch")
        ax.set_title(f"{name[0].upper()}{name[1:]} (best {max(scores):.4f})")
        ax.grid(alpha=0.3)
    if min(scores) < -1.0:  # an R^2 far below 0 in the first epochs would flatten the rest
        ax.set_ylim(bottom=-1.0, top=max(1.0, max(scores)) + 0.02)
        ax.set_ylabel(f"{name} (clipped at -1)")
