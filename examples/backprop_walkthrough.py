"""One mini-batch through a small network, every intermediate next to the seed equation behind it.

Seed 000's "overview of inputs and outputs" in the column layout (one column per
example, m columns), for l = 1..L:

    forward    Z[l] = W[l] A[l-1] + b[l]     A[l] = g[l](Z[l])       A[0] = X      (eqs. 5-8)
    cost       J = f(A[L], Y)                                                     (eq. 9)
    backward   dZ[l] = (dA[l]/dZ[l])^T dA[l], element-wise dA[l] * g'(Z[l])       (eqs. 17-18)
               dW[l] = dZ[l] A[l-1]^T                                             (eq. 15)
               db[l] = sum of dZ[l] over axis 1 (the examples)                    (eq. 16)
               dA[l-1] = W[l]^T dZ[l]                                             (eq. 22)

``net.trace(X, Y)`` returns these per layer. For each one the script prints the
shapes and a few values, and recomputes the equation from the arrays (written
against the Array API namespace ``xp``, so it runs on every backend) to show
that the library computes exactly that. Then it applies seed 002's softmax
Jacobian explicitly, and checks one weight's gradient against a central finite
difference in float64.

    python examples/backprop_walkthrough.py
    python examples/backprop_walkthrough.py --backend array_api_strict --device device1
"""

from __future__ import annotations

import numpy as np

import xpmlp
from xpmlp.backends import to_numpy

from _common import on, one_hot, parser, prepare_backend

SIZES = [3, 4, 4, 3]
ACTIVATIONS = ["tanh", "relu", "softmax"]
M = 5


def few(x, n: int = 3) -> str:
    """A few values: the first row's first n (the first column's for a column vector like b)."""
    host = to_numpy(x)
    vals = host[:, 0] if host.shape[1] == 1 else host[0]
    text = ", ".join(f"{v: .4f}" for v in vals[:n])
    return f"[{text}{', ...' if vals.size > n else ''}]"


def shape(x) -> str:
    return "(" + ", ".join(str(int(s)) for s in x.shape) + ")"


def max_abs(xp, a, b) -> float:
    return float(xp.max(xp.abs(a - b)))


def row(layer: str, equation: str, ref: str, shapes: str, value, err: float | None) -> None:
    """One line of the table: equation, seed reference, shapes, a few values, |library - by hand|."""
    check = "" if err is None else f"{err:.0e}"
    print(f"{layer:<3} {equation:<28} {ref:<8} {shapes:<24} {few(value):<34} {check}")


HEADER = (f"{'l':<3} {'equation':<28} {'seed 000':<8} {'shapes':<24} {'first values (row 0)':<34} "
          f"max |trace - by hand|")


def derivative(name: str, Z, A, xp):
    """g'(Z) written out for the element-wise activations of this network."""
    if name == "tanh":
        return 1.0 - A * A
    if name == "relu":
        return xp.astype(Z > 0.0, Z.dtype)  # the sub-gradient at 0 is 0, as in PyTorch, JAX, scikit-learn
    raise ValueError(name)


def main(argv=None) -> None:
    p = parser(__doc__, out=None)
    p.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default: 1e-6)")
    args = p.parse_args(argv)
    if args.dtype != "float64":
        p.error("the finite-difference check needs float64: drop --dtype float32")
    prepare_backend(args.backend, args.dtype)

    net = xpmlp.MLP(SIZES, ACTIVATIONS, "cross_entropy", backend=args.backend, device=args.device,
                    dtype="float64", seed=args.seed)
    xp = net.xp
    rng = np.random.default_rng(args.seed)
    X = on(net, rng.standard_normal((SIZES[0], M)))
    Y = on(net, one_hot(rng.integers(0, SIZES[-1], M), SIZES[-1]))
    L = net.n_layers
    print(f"{net}\nA mini-batch of m = {M} examples: X = A[0] is {shape(X)}, Y is {shape(Y)} (one-hot)\n")

    layers = net.trace(X, Y)  # layers[l - 1] holds layer l's A_prev, W, b, Z, A, dZ, dW, db, dA_prev
    worst = 0.0

    print("FORWARD, l = 1..L")
    print(HEADER)
    for l, t in enumerate(layers, start=1):
        g = net.activations[l - 1]
        err_Z = max_abs(xp, t["Z"], t["W"] @ t["A_prev"] + t["b"])
        err_A = max_abs(xp, t["A"], g.forward(t["Z"], xp=xp))
        worst = max(worst, err_Z, err_A)
        row(l, f"Z[{l}] = W[{l}] A[{l - 1}] + b[{l}]", "(5)", f"{shape(t['W'])} {shape(t['A_prev'])} + "
            f"{shape(t['b'])}", t["Z"], err_Z)
        row("", f"A[{l}] = {g.name}(Z[{l}])", "(6)", shape(t["A"]), t["A"], err_A)
    A_L = layers[-1]["A"]
    J = net.cost(X, Y)
    J_by_hand = -xp.sum(Y * xp.log(A_L)) / M
    print(f"each column of A[{L}] sums to 1: {to_numpy(xp.sum(A_L, axis=0)).round(12)}")
    print(f"cost (eq. 9): J = -1/m sum Y log A[{L}] = {float(J):.6f}   by hand: {float(J_by_hand):.6f}\n")

    print("BACKWARD, l = L..1")
    print(HEADER)
    for l in range(L, 0, -1):
        t = layers[l - 1]
        if l == L:  # the seed of the backward pass
            err = max_abs(xp, t["dZ"], (A_L - Y) / M)
            row(l, f"dZ[{l}] = (A[{l}] - Y) / m", "fused", shape(t["dZ"]), t["dZ"], err)
        else:  # a hidden layer: dZ[l] = dA[l] * g'(Z[l]), dA[l] coming from the layer above
            g = net.activations[l - 1].name
            err = max_abs(xp, t["dZ"], layers[l]["dA_prev"] * derivative(g, t["Z"], t["A"], xp))
            row(l, f"dZ[{l}] = dA[{l}] * {g}'(Z[{l}])", "(17-18)", shape(t["dZ"]), t["dZ"], err)
        worst = max(worst, err)
        checks = [
            ("dW", f"dW[{l}] = dZ[{l}] A[{l - 1}]^T", "(15)", t["dZ"] @ t["A_prev"].T,
             f"{shape(t['dZ'])} {shape(t['A_prev'].T)}"),
            ("db", f"db[{l}] = sum_axis=1 dZ[{l}]", "(16)", xp.sum(t["dZ"], axis=1, keepdims=True),
             f"-> {shape(t['db'])}"),
            ("dA_prev", f"dA[{l - 1}] = W[{l}]^T dZ[{l}]", "(22)", t["W"].T @ t["dZ"],
             f"{shape(t['W'].T)} {shape(t['dZ'])}"),
        ]
        for key, equation, ref, by_hand, shapes in checks:
            err = max_abs(xp, t[key], by_hand)
            worst = max(worst, err)
            row("", equation, ref, shapes, t[key], err)
    print(f"dA[0] = dJ/dX comes out too and is usually ignored. db sums over the examples (axis 1): one "
          f"entry per unit; axis 0 (seed 003's slip) would give {shape(xp.sum(A_L, axis=0, keepdims=True))}.")
    print(f"every equation recomputed from the arrays agrees with net.trace: max |diff| = {worst:.1e}\n")

    print("SOFTMAX JACOBIAN  (seed 002: da_j/dz_i = a_i (delta_ij - a_j)), for the first example")
    a = A_L[:, 0:1]                                    # (n, 1), one column
    eye = on(net, np.eye(SIZES[-1]))                  # made on the host, moved to the network's device
    jac = eye * a - a @ a.T                            # jac[i, j] = da_j/dz_i: diag(a) - a a^T
    dA_L = net.loss.gradient(A_L, Y, xp=xp)            # dJ/dA[L] = -Y / A[L] / m, the loss alone
    dz = jac @ dA_L[:, 0:1]                            # eq. 18: dJ/dz_i = sum_j (da_j/dz_i) dJ/da_j
    fused = layers[-1]["dZ"][:, 0:1]
    err = max_abs(xp, dz, fused)
    worst = max(worst, err)
    print(f"{np.array2string(to_numpy(jac), precision=4, suppress_small=True)}")
    print(f"Jacobian times dA[{L}] = -Y / A[{L}] / m:  {to_numpy(dz)[:, 0].round(6)}")
    print(f"fused dZ[{L}] = (A[{L}] - Y) / m:          {to_numpy(fused)[:, 0].round(6)}   max |diff| = {err:.1e}\n")

    print("FINITE-DIFFERENCE CHECK  (float64, central difference)")
    l, j, k = 1, 0, 1                                  # the weight w_jk of layer 1, deepest in the chain
    W, b = (to_numpy(p).copy() for p in net.params[l - 1])

    def cost_with(w: float) -> float:
        W_try = W.copy()
        W_try[j, k] = w
        net.params[l - 1] = (on(net, W_try), on(net, b))
        return float(net.cost(X, Y))

    numeric = (cost_with(W[j, k] + args.eps) - cost_with(W[j, k] - args.eps)) / (2 * args.eps)
    net.params[l - 1] = (on(net, W), on(net, b))
    analytic = float(to_numpy(layers[l - 1]["dW"])[j, k])
    rel = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)
    print(f"dJ/dW[{l}][{j},{k}]: backprop {analytic:.10f}   (J(w+eps) - J(w-eps)) / 2eps {numeric:.10f}   "
          f"(eps = {args.eps:g})")
    print(f"relative difference: {rel:.2e}  ({'agree' if rel < 1e-6 else 'DISAGREE'})")


if __name__ == "__main__":
    main()
