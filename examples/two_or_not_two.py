"""Seed 002's first digit problem: is this 8x8 image a "2" or not?

One output unit with a sigmoid, a = P(digit is 2 | x), trained with binary
cross-entropy J = -1/m sum [y log a + (1 - y) log(1 - a)] (seed 002 calls the
divergence KL; for a 0/1 target it is this log-loss). Sigmoid and binary
cross-entropy pair up, so the backward pass starts from dZ[L] = (A[L] - Y) / m.

Data: the 1,797 bundled digits (pixels / 16, one column per image), 25% held
out, stratified. Only about one image in ten is a 2, so "always say not 2"
already scores 90%: look at the confusion matrix, not only at the accuracy.
The held-out cost jumps now and then: that is the noise of stochastic gradient
descent at a constant learning rate (try --lr 0.1 --epochs 60 for a smoother curve).

    python examples/two_or_not_two.py
    python examples/two_or_not_two.py --backend jax --epochs 50 --out two.png
"""

from __future__ import annotations

import numpy as np

import xpmlp
from xpmlp.backends import to_numpy

from _common import confusion_matrix, digits_setup, on, plot_loss_curves, print_confusion, train_and_watch


def main(argv=None) -> None:
    args, X_all, digit, train, test = digits_setup(__doc__, "two_or_not_two_loss.png", argv, hidden=16,
                                                   activation="tanh", epochs=30, lr=0.3, batch_size=32)
    is_two = (digit == 2).astype(np.float64)
    net = xpmlp.MLP([64, args.hidden, 1], [args.activation, "sigmoid"], "binary_cross_entropy",
                    backend=args.backend, device=args.device, dtype=args.dtype, seed=args.seed)
    # The seeds' layout: one column per example, so X is (64, m) and Y is (1, m).
    X, Y = on(net, X_all[train].T), on(net, is_two[None, train])
    X_test, Y_test = on(net, X_all[test].T), on(net, is_two[None, test])
    print(f"{net}\n{X.shape[1]} training and {X_test.shape[1]} held-out images; "
          f"{int(is_two[train].sum())} and {int(is_two[test].sum())} of them are 2s")

    # Plain mini-batch gradient descent, W <- W - lr dW (the loop is in _common.py).
    curve, held_out = train_and_watch(net, X, Y, X_test, Y_test, args)

    prob = to_numpy(net.forward(X_test))[0]
    predicted = (prob >= 0.5).astype(np.int64)
    truth = is_two[test].astype(np.int64)
    C = confusion_matrix(truth, predicted, 2)
    accuracy = np.trace(C) / C.sum()
    print(f"held-out accuracy: {accuracy:.4f}  (always answering 'not 2' would score "
          f"{1 - truth.mean():.4f})")
    print(f"2s found (recall): {C[1, 1]}/{C[1].sum()};  said 2 and was (precision): {C[1, 1]}/{C[:, 1].sum()}")
    print_confusion(C, ["not 2", "2"])
    plot_loss_curves({"training (mean over the epoch's batches)": curve, "held out": held_out}, args.out,
                     f'"2 or not 2": sigmoid output, binary cross-entropy ({args.backend})',
                     "cost J (binary cross-entropy)")


if __name__ == "__main__":
    main()
