"""Seed 002's second digit problem: which of the ten digits is this 8x8 image?

Ten output units with a softmax over each column, a_i = e^{z_i} / sum_j e^{z_j},
read as P(digit = i | x), trained with the cross-entropy J = -1/m sum Y log A
against one-hot targets (for one-hot targets this is seed 002's KL divergence).
Softmax and cross-entropy pair up, so the backward pass starts from
dZ[L] = (A[L] - Y) / m: the softmax Jacobian a_i (delta_ij - a_j) of seed 002
cancels against the 1/A of the loss (backprop_walkthrough.py shows it).

Data: the 1,797 bundled digits (pixels / 16, one column per image), 25% held
out, stratified. Trained first with the low-level ``xpmlp.MLP`` and a plain
gradient-descent loop, then with ``xpmlp.MLPClassifier`` (the same algorithm).

    python examples/ten_digits.py
    python examples/ten_digits.py --backend torch --hidden 128 --epochs 60
"""

from __future__ import annotations

import warnings

import numpy as np

import xpmlp
from xpmlp.backends import to_numpy
from xpmlp.training import ConvergenceWarning

from _common import Timer, confusion_matrix, digits_setup, on, one_hot, plot_loss_curves, print_confusion, train_and_watch


def main(argv=None) -> None:
    args, X_all, digit, train, test = digits_setup(__doc__, "ten_digits_loss.png", argv, hidden=64,
                                                   activation="tanh", epochs=40, lr=0.2, batch_size=32)
    net = xpmlp.MLP([64, args.hidden, 10], [args.activation, "softmax"], "cross_entropy",
                    backend=args.backend, device=args.device, dtype=args.dtype, seed=args.seed)
    # One column per example: X is (64, m), Y is the one-hot (10, m).
    X, Y = on(net, X_all[train].T), on(net, one_hot(digit[train], 10))
    X_test, Y_test = on(net, X_all[test].T), on(net, one_hot(digit[test], 10))
    print(f"{net}\n{X.shape[1]} training and {X_test.shape[1]} held-out images")

    # Plain mini-batch gradient descent, W <- W - lr dW (the loop is in _common.py).
    curve, held_out = train_and_watch(net, X, Y, X_test, Y_test, args)

    A = to_numpy(net.forward(X_test))  # (10, m): a probability per digit per column
    predicted = np.argmax(A, axis=0)
    C = confusion_matrix(digit[test], predicted, 10)
    print(f"held-out accuracy: {np.trace(C) / C.sum():.4f}")
    print_confusion(C, [str(d) for d in range(10)])

    # The same model through the scikit-learn-style estimator: rows in (X is (n_samples, 64)), labels
    # in, the transposes and the one-hot coding done for you. solver="sgd" without momentum or L2 is
    # the loop above; its batches are drawn differently, so the numbers differ a little.
    clf = xpmlp.MLPClassifier(hidden_layer_sizes=(args.hidden,), activation=args.activation, solver="sgd",
                              learning_rate_init=args.lr, momentum=0.0, alpha=0.0, batch_size=args.batch_size,
                              max_iter=args.epochs, random_state=args.seed, backend=args.backend,
                              device=args.device, dtype=args.dtype)
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # it stops at max_iter while still improving
        clf.fit(X_all[train], digit[train])
    print(f"\n{clf}\nfit in {t.seconds:.2f} s, {clf.n_iter_} epochs; "
          f"held-out accuracy: {clf.score(X_all[test], digit[test]):.4f} (estimator)")

    plot_loss_curves({"MLP + plain loop: training (mean over the batches)": curve,
                      "MLP + plain loop: held out": held_out,
                      "MLPClassifier(solver='sgd').loss_curve_ (training)": clf.loss_curve_}, args.out,
                     f"ten digits: softmax output, cross-entropy ({args.backend})", "cost J (cross-entropy)")


if __name__ == "__main__":
    main()
