"""The workloads: network shapes, batch sizes, the synthetic task and its reference loss.

Every contender trains the same network shape on the same data, in the same batch
order, with the same hyperparameters (Adam, lr 1e-3, betas 0.9/0.999, eps 1e-8, no
weight decay), in float32. The task is learnable by construction: the labels are the
argmax of a fixed random *teacher* network (one tanh hidden layer) applied to
Gaussian inputs, so every contender's cross-entropy falls from ln(10) = 2.30 within
an epoch. The data are generated on the host from a fixed seed, identically in every
worker process.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["Workload", "WORKLOADS", "make_data", "batch_indices", "reference_loss", "gemm_flops"]

DATA_SEED = 20261123


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple[int, ...]  #: n0, n1, ..., nL (ReLU hidden layers, softmax output, cross-entropy)
    batch: int
    epoch_samples: int = 60000
    lr: float = 1e-3
    gpu_only: bool = False
    note: str = ""
    eval_rows: int = 8192  #: training rows on which the final loss is recomputed (float64, on the host)

    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    @property
    def steps_per_epoch(self) -> float:
        """Epoch = ``epoch_samples`` examples; time per epoch = time per step x this."""
        return self.epoch_samples / self.batch

    @property
    def full_steps(self) -> int:
        """Whole batches in one pass over the data (the last partial batch is dropped)."""
        return self.epoch_samples // self.batch

    def label(self) -> str:
        return f"{self.name} {'-'.join(map(str, self.sizes))} b{self.batch}"


WORKLOADS = {
    "W1": Workload("W1", (784, 256, 256, 10), 256, note="MNIST-sized"),
    "W2": Workload("W2", (784, 1024, 1024, 10), 1024, note="wider, GEMM-heavier"),
    "W3": Workload("W3", (64, 32, 10), 32, note="digits-sized: per-step overhead"),
    "W4": Workload("W4", (4096, 4096, 4096, 4096), 8192, gpu_only=True, eval_rows=512,
                   note="GEMM-bound (GPU only)"),
}


def gemm_flops(w: Workload) -> int:
    """FLOPs of the GEMMs of one training step: 2 m n_in n_out each for the forward
    ``Z = W A_prev``, ``dW = dZ A_prev^T`` and ``dA_prev = W^T dZ``, the last one
    skipped for the first layer (nobody needs the gradient of the data)."""
    m = w.batch
    total = 0
    for l, (n_in, n_out) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
        total += (2 if l == 0 else 3) * 2 * m * n_in * n_out
    return total


def make_data(w: Workload, seed: int = DATA_SEED):
    """``(X, y)``: ``X`` float32 ``(N, n0)`` standard normal, ``y`` int64 labels in
    ``[0, nL)`` from a fixed random teacher (n0 -> 64 tanh -> nL, argmax).

    Deterministic: the same on every call, in every process.
    """
    rng = np.random.default_rng(seed + int(w.name[1:]))
    n0, nL = w.sizes[0], w.sizes[-1]
    X = rng.standard_normal((w.epoch_samples, n0), dtype=np.float32)
    T1 = rng.standard_normal((n0, 64)) / math.sqrt(n0)
    T2 = rng.standard_normal((64, nL))
    y = np.empty(w.epoch_samples, dtype=np.int64)
    for s in range(0, w.epoch_samples, 8192):  # chunked: keeps the float64 temporaries small
        y[s:s + 8192] = np.argmax(np.tanh(2.0 * (X[s:s + 8192] @ T1)) @ T2, axis=1)
    return X, y


def batch_indices(w: Workload, step: int, seed: int = DATA_SEED) -> tuple[np.ndarray, int]:
    """The host permutation of the epoch that step ``step`` falls in, and the batch's offset in it.

    Each epoch is a fresh permutation drawn from ``seed + epoch``: every contender
    sees the same batches in the same order.
    """
    epoch, k = divmod(step, w.full_steps)
    perm = np.random.default_rng(seed + 1000 + epoch).permutation(w.epoch_samples)
    return perm, k * w.batch


def reference_loss(params, X: np.ndarray, y: np.ndarray) -> float:
    """The mean cross-entropy of a ReLU MLP (softmax output) in float64 NumPy.

    ``params`` is ``[(W, b), ...]`` with ``W: (n_out, n_in)`` and ``b`` of ``n_out``
    entries (any shape), as host arrays. Used to score every contender the same way.
    """
    A = np.asarray(X, dtype=np.float64)
    L = len(params)
    for l, (W, b) in enumerate(params):
        Z = A @ np.asarray(W, dtype=np.float64).T + np.asarray(b, dtype=np.float64).reshape(1, -1)
        A = np.maximum(Z, 0.0) if l < L - 1 else Z
    Z = A - A.max(axis=1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())
