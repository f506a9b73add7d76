"""``xpmlp.plot_history``: the training curves of an estimator, a History or a list of losses."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import xpmlp
from xpmlp.plotting import check_image_path, plot_history

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xpmlp.training.ConvergenceWarning)  # 30 epochs are enough to draw
        return xpmlp.MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=30, random_state=0,
                                   n_iter_no_change=30).fit(X, y)


def lines(ax):
    return [line.get_ydata().tolist() for line in ax.get_lines()]


def test_an_estimator_with_early_stopping_gives_loss_and_validation_panels(tmp_path, fitted):
    pytest.importorskip("matplotlib")
    import matplotlib

    backend = matplotlib.get_backend()
    path = tmp_path / "curve.png"
    fig = plot_history(fitted, path, title="blobs")
    assert path.read_bytes()[:8] == PNG
    loss_ax, score_ax = fig.axes
    assert lines(loss_ax) == [pytest.approx(fitted.loss_curve_)]
    assert lines(score_ax) == [pytest.approx(fitted.validation_scores_)]
    assert score_ax.get_ylabel() == "validation accuracy"
    assert fig.get_suptitle() == "blobs"
    assert matplotlib.get_backend() == backend  # a file is written without touching pyplot's settings
    assert xpmlp.plot_history is plot_history


def test_a_history_or_a_list_gives_one_panel_and_scores_can_be_given(tmp_path):
    pytest.importorskip("matplotlib")
    net = xpmlp.MLP([2, 4, 1], ["tanh", "identity"], "squared_error", dtype="float64", seed=0)
    X = np.random.default_rng(1).standard_normal((40, 2))
    history = xpmlp.train(net, X, X[:, :1] * 2.0, optimizer=xpmlp.make_optimizer("adam", 0.01), max_iter=5,
                          check_convergence=False)
    fig = plot_history(history, tmp_path / "h.pdf")
    assert len(fig.axes) == 1 and lines(fig.axes[0]) == [pytest.approx(history.loss_curve)]
    assert (tmp_path / "h.pdf").read_bytes()[:5] == b"%PDF-"

    losses = [50 * 0.8 ** k for k in range(30)]
    r2 = [-40 + 41 * (1 - 0.8 ** k) for k in range(30)]
    fig = plot_history(losses, tmp_path / "r2.svg", scores=r2, score_name="held-out R²")
    loss_ax, score_ax = fig.axes
    assert loss_ax.get_yscale() == "log"  # the loss spans more than a factor of 50
    assert score_ax.get_ylim()[0] == -1.0 and "clipped at -1" in score_ax.get_ylabel()
    assert score_ax.get_title() == f"Held-out R² (best {max(r2):.4f})"


def test_into_a_given_axes_with_the_score_on_a_twin_axis(fitted):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert plot_history(fitted, ax=ax) is fig
    assert len(fig.axes) == 2 and fig.axes[1].bbox.bounds == ax.bbox.bounds  # the twin shares the box
    assert lines(ax) == [pytest.approx(fitted.loss_curve_)]


def test_without_a_path_pyplot_makes_the_figure(fitted):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = plot_history(fitted.loss_curve_)
    try:
        assert plt.fignum_exists(fig.number)  # a notebook shows it
    finally:
        plt.close(fig)


@pytest.mark.parametrize("bad, error, match", [
    (xpmlp.MLPRegressor(), ValueError, "MLPRegressor is not fitted yet: call fit before plot_history"),
    (3.5, TypeError, "plot_history takes a fitted MLPClassifier/MLPRegressor, an xpmlp.History or a sequence"),
    ([], ValueError, "nothing to plot: the loss curve is empty"),
])
def test_what_cannot_be_plotted(bad, error, match):
    with pytest.raises(error, match=match):
        plot_history(bad)


def test_a_bad_extension_is_refused_before_drawing(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match=r"has the extension '\.xyz'; give an image file name ending in one of "
                                         r"\[.*'\.png'.*\]"):
        plot_history([1.0, 0.5], tmp_path / "curve.xyz")
    with pytest.raises(ValueError, match="has no extension"):
        check_image_path(tmp_path / "curve")
    assert check_image_path("a/b/Curve.PNG") == "png"
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'plotting needs matplotlib.*pip install "xpmlp\[plot\]"'):
        plot_history([1.0, 0.5])
    with pytest.raises(ImportError, match=r'the plot needs matplotlib'):
        plot_history([1.0, 0.5], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
