"""XOR, seed 001's "infamous" problem: first a network of perceptrons built by hand, then one trained.

A single perceptron cannot compute XOR (the classes are not linearly separable).
Seed 001's idea: learn the OR and the AND boundaries and combine them. With the
step activation g(z) = 1 if z >= 0 else 0 and the columns of X as the four
inputs, the hand-set network is

    hidden unit 1, OR:    z = x1 + x2 - 0.5        (fires unless both are 0)
    hidden unit 2, NAND:  z = -x1 - x2 + 1.5       (fires unless both are 1)
    output, AND:          z = h1 + h2 - 1.5        (fires when both hidden units fire)

that is W[1] = [[1, 1], [-1, -1]], b[1] = [[-0.5], [1.5]], W[2] = [[1, 1]], b[2] = [[-1.5]].

Then the same kind of network with smooth activations (tanh hidden, sigmoid
output, binary cross-entropy) is trained from a seed by plain gradient descent,
W <- W - lr dW and b <- b - lr db, with the gradients of ``net.gradients``
(or, with ``--optimizer adam``, by one of xpmlp's optimizers:
``params, state = opt.update(grads, state, params)``).

Two hidden units are enough in principle, but gradient descent from a random
start often stalls in a local minimum with them (on this problem, 2000 full-batch
steps of lr 1 reach XOR from 11 of 20 seeds with tanh, 15 of 20 with sigmoid);
with four hidden units every one of those 20 seeds does. So the default is 2-4-1;
``--hidden 2`` shows a failure (seed 0 ends with two of the four inputs stuck at
a = 0.5) and ``--hidden 2 --seed 1`` a success.

    python examples/xor.py                     # numpy, float64
    python examples/xor.py --backend torch --hidden 2 --seed 1
"""

from __future__ import annotations

import numpy as np

import xpmlp
from xpmlp.backends import to_numpy

from _common import on, parser, prepare_backend, pyplot, save

# The four inputs as columns, in seed 001's table order: (0,0), (1,0), (0,1), (1,1).
X_HOST = np.array([[0.0, 1.0, 0.0, 1.0],
                   [0.0, 0.0, 1.0, 1.0]])
Y_HOST = np.array([[0.0, 1.0, 1.0, 0.0]])


def hand_built(args) -> xpmlp.MLP:
    """Seed 001's network of perceptrons, weights assigned through ``net.params``."""
    net = xpmlp.MLP([2, 2, 1], ["step", "step"], backend=args.backend, device=args.device, dtype=args.dtype)
    W1 = [[1.0, 1.0],      # OR
          [-1.0, -1.0]]    # NAND
    b1 = [[-0.5],
          [1.5]]
    W2 = [[1.0, 1.0]]      # AND of OR and NAND
    b2 = [[-1.5]]
    net.params = [(on(net, W1), on(net, b1)), (on(net, W2), on(net, b2))]
    return net


def truth_table(net: xpmlp.MLP) -> bool:
    X = on(net, X_HOST)
    A, cache = net.forward_cache(X)
    H = to_numpy(cache[0].A)  # the hidden layer's A[1]: (2, 4)
    out = to_numpy(A)[0]
    print(" x1  x2 | OR  NAND | XOR  (expected)")
    for i in range(4):
        x1, x2 = X_HOST[:, i]
        print(f" {x1:2.0f}  {x2:2.0f} | {H[0, i]:2.0f}  {H[1, i]:4.0f} | {out[i]:3.0f}  ({Y_HOST[0, i]:.0f})")
    ok = bool(np.array_equal(out, Y_HOST[0]))
    print(f"hand-built network computes XOR: {'yes' if ok else 'NO'}")
    return ok


def train(args) -> xpmlp.MLP:
    net = xpmlp.MLP([2, args.hidden, 1], [args.activation, "sigmoid"], "binary_cross_entropy",
                    backend=args.backend, device=args.device, dtype=args.dtype, seed=args.seed)
    X, Y = on(net, X_HOST), on(net, Y_HOST)
    method = "plain gradient descent" if args.optimizer == "gd" else f"xpmlp's {args.optimizer!r} optimizer"
    print(f"\nTraining {net}\nwith {method}, lr = {args.lr}, {args.steps} full-batch steps")
    opt = None if args.optimizer == "gd" else xpmlp.make_optimizer(args.optimizer, learning_rate=args.lr)
    state = None if opt is None else opt.init(net.params)  # the optimizer's momenta and step count
    for step in range(args.steps + 1):
        J, grads = net.gradients(X, Y)
        if step % (args.steps // 4) == 0:
            print(f"  step {step:5d}   J = {float(J):.6f}")
        if step == args.steps:
            break
        if opt is None:  # the seeds' update, W <- W - lr dW and b <- b - lr db
            net.params = [(W - args.lr * dW, b - args.lr * db) for (W, b), (dW, db) in zip(net.params, grads)]
        else:            # the same step through one of xpmlp's optimizers
            params, state = opt.update(grads, state, list(net.params))
            net.params = params
    np.set_printoptions(precision=3, suppress=True)
    for l, (W, b) in enumerate(net.params, start=1):
        print(f"learned W[{l}] =\n{to_numpy(W)}\nlearned b[{l}] =\n{to_numpy(b)}")
    A = to_numpy(net.forward(X))[0]
    print(" x1  x2 |  A[2]   class  (expected)")
    for i in range(4):
        print(f" {X_HOST[0, i]:2.0f}  {X_HOST[1, i]:2.0f} | {A[i]:.3f}   {int(A[i] >= 0.5):3d}    ({Y_HOST[0, i]:.0f})")
    ok = bool(np.array_equal(A >= 0.5, Y_HOST[0] == 1.0))
    print(f"trained network computes XOR: {'yes' if ok else 'NO (a local minimum: try another --seed or --hidden 4)'}")
    return net


def plot(hand: xpmlp.MLP, trained: xpmlp.MLP, path: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    g = np.linspace(-0.5, 1.5, 201)
    G1, G2 = np.meshgrid(g, g)
    grid = np.stack([G1.ravel(), G2.ravel()])  # (2, 201*201): one column per grid point
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), constrained_layout=True)
    panels = [(hand, "hand-built perceptrons (step)", "output (0 or 1)"),
              (trained, f"trained {trained.sizes[0]}-{trained.sizes[1]}-1 "
                        f"({trained.activations[0].name} + sigmoid)", "output A[2] = P(XOR = 1)")]
    for ax, (net, title, label) in zip(axes, panels):
        A = to_numpy(net.forward(on(net, grid)))[0].reshape(G1.shape)
        filled = ax.contourf(G1, G2, A, levels=np.linspace(0, 1, 11), cmap="RdBu_r", vmin=0, vmax=1)
        ax.contour(G1, G2, A, levels=[0.5], colors="k", linewidths=1.5)
        for cls, marker, colour in ((0, "o", "tab:blue"), (1, "s", "tab:red")):
            pts = X_HOST[:, Y_HOST[0] == cls]
            ax.scatter(pts[0], pts[1], marker=marker, s=110, c=colour, edgecolors="k",
                       label=f"XOR = {cls}", zorder=3)
        ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
        fig.colorbar(filled, ax=ax, label=label, shrink=0.9)
    axes[0].legend(loc="center", framealpha=0.9)
    fig.suptitle("XOR decision regions (black line: output = 0.5)")
    save(fig, path)
    plt.close(fig)


def main(argv=None) -> None:
    p = parser(__doc__, out="xor_decision_boundary.png")
    p.add_argument("--hidden", type=int, default=4, help="hidden units of the trained network (default: 4)")
    p.add_argument("--activation", default="tanh", choices=["tanh", "sigmoid"],
                   help="hidden activation of the trained network (default: tanh)")
    p.add_argument("--optimizer", default="gd", choices=["gd", "sgd", "adam", "adamw"],
                   help="gd: the loop's own W <- W - lr dW (default); else xpmlp.make_optimizer(NAME)")
    p.add_argument("--lr", type=float, default=1.0, help="learning rate (default: 1.0; try 0.05 with adam)")
    p.add_argument("--steps", type=int, default=2000, help="gradient-descent steps (default: 2000)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 1000)
    prepare_backend(args.backend, args.dtype)

    print("Seed 001's XOR as a network of perceptrons, weights set by hand")
    hand = hand_built(args)
    for l, (W, b) in enumerate(hand.params, start=1):
        print(f"W[{l}] = {to_numpy(W).tolist()}   b[{l}] = {to_numpy(b).tolist()}")
    truth_table(hand)
    trained = train(args)
    plot(hand, trained, args.out)


if __name__ == "__main__":
    main()
