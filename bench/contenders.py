"""The contenders: what one training step is for each of them, and how to time it honestly.

Each contender lives in its own worker process (see :mod:`bench.worker`) and offers:

``setup(w, X, y, device)``  build the model, the optimizer and the data on the device
                            (raise :class:`Unavailable` with the reason if it cannot);
``run(k)``                  k training steps, synchronised at the end (the GPU has finished);
``host_params()``           ``[(W, b), ...]`` as NumPy arrays with ``W: (n_out, n_in)``, to score
                            the loss the same way for everybody (``None`` for the GEMM floors);
``info()``                  what it actually used (dtype, optimizer implementation, ...).

A *training step* is: gather the batch from the in-memory training set (same permutation
per epoch for everybody, see :func:`bench.workloads.batch_indices`), forward, loss, backward,
Adam update. The index array of an epoch is moved to the device once per epoch.
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

import numpy as np

from .workloads import Workload, batch_indices

__all__ = ["Unavailable", "CONTENDERS", "make_contender", "missing_library"]


#: ``--clock cpu`` (with ``--threads 1``): this process's CPU time instead of wall time, which
#: other jobs on a shared machine disturb far less. Wall time (the default) is what users see.
clock = time.process_time if os.environ.get("XPMLP_BENCH_CLOCK") == "cpu" else time.perf_counter


class Unavailable(Exception):
    """The contender cannot run here; the message says why."""


class Contender:
    name = ""
    library = ""  #: the Python package it needs (checked before a worker is started)
    floor_of = ""  #: which GEMM floor it is compared with ("numpy", "torch", "cupy")
    devices: tuple[str, ...] = ("cpu", "gpu")
    is_floor = False

    def setup(self, w: Workload, X: np.ndarray, y: np.ndarray, device: str) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def sync(self) -> None:
        """Wait until the device has finished everything queued so far."""

    def run(self, k: int) -> float:
        """Seconds for k steps, from an idle device to an idle device."""
        self.sync()
        t0 = clock()
        for _ in range(k):
            self.step()
        self.sync()
        return clock() - t0

    def host_params(self):
        return None

    def info(self) -> dict[str, Any]:
        return {}

    # -- memory: RSS on the CPU, the allocator's peak on the GPU
    def gpu_library(self) -> str | None:
        """Whose GPU allocator to read the peak from ("torch", "cupy", "jax"); None on the CPU."""
        return None

    def memory_reset(self) -> None:
        lib = self.gpu_library()
        self._gpu = _gpu_memory(lib) if lib else None
        if self._gpu:
            self._gpu.reset()
            self._mem_how = f"{lib} allocator peak minus memory in use after setup"
            return
        self._mem_base = _proc_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self._mem_how = "RSS high-water mark (VmHWM) minus RSS after setup"
        except OSError:
            self._mem_how = "VmHWM minus RSS after setup (HWM not resettable: may include setup)"

    def memory_peak_mb(self) -> float | None:
        if self._gpu:
            return self._gpu.peak_mb()
        return max(0.0, (_proc_kb("VmHWM") - self._mem_base) / 1024.0)

    # -- the batch order, shared by everybody
    _epoch = -1
    _step_no = 0

    def next_batch_offset(self, to_device):
        """The device index array of the current epoch and the batch's offset in it."""
        epoch = self._step_no // self.w.full_steps
        if epoch != self._epoch:
            perm, _ = batch_indices(self.w, self._step_no)
            self._perm = to_device(perm)
            self._epoch = epoch
        off = (self._step_no % self.w.full_steps) * self.w.batch
        self._step_no += 1
        return self._perm, off


def _proc_kb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


def missing_library(c: Contender) -> str | None:
    """Why the contender cannot run (its library is not installed), or None."""
    for lib in c.library.split(","):
        if lib and importlib.util.find_spec(lib) is None:
            return f"{lib} is not installed"
    return None


# ----------------------------------------------------------------------------- xpmlp
class XpmlpContender(Contender):
    """xpmlp's training step on one backend, called once per batch: the public
    ``xpmlp.make_train_step`` (gather ``xp.take(X, idx, axis=0)`` on the row-layout data,
    then ``step(params, opt_state, Xb, Yb, key)``: value and gradients, Adam update),
    with the batch costs summed on the device, as the eager epoch runner does.
    """

    def __init__(self, backend: str):
        self.backend = backend
        self.name = f"xpmlp-{backend}"
        self.library = "array_api_compat," + {"numpy": "numpy", "torch": "torch", "jax": "jax",
                                              "cupy": "cupy", "array_api_strict": "array_api_strict"}[backend]
        self.floor_of = {"numpy": "numpy", "torch": "torch", "cupy": "cupy"}.get(backend, "numpy")
        self.devices = ("cpu",) if backend in ("numpy", "array_api_strict") else (
            ("gpu",) if backend == "cupy" else ("cpu", "gpu"))

    def setup(self, w, X, y, device):
        import xpmlp
        from xpmlp import backends

        self.w = w
        dev = None
        if device == "gpu":
            dev = {"torch": "cuda", "cupy": "cuda", "jax": "gpu"}[self.backend]
            usable, why, devices = backends.probe(self.backend)
            if not usable or not any(("cuda" in d.lower() or "gpu" in d.lower()) for d in devices):
                raise Unavailable(f"{self.backend} sees no GPU here ({why}; devices {devices})")
        elif self.backend == "jax":
            import jax

            if jax.default_backend() != "cpu":
                dev = "cpu"
        L = len(w.sizes) - 1
        self.net = net = xpmlp.MLP(list(w.sizes), ["relu"] * (L - 1) + ["softmax"], "cross_entropy",
                                   backend=self.backend, device=dev, dtype="float32", seed=0)
        self.xp = xp = net.xp
        self.X = backends.to_backend(X, xp, net.device)
        onehot = np.zeros((len(y), w.n_classes), dtype=np.float32)
        onehot[np.arange(len(y)), y] = 1.0
        self.Y = backends.to_backend(onehot, xp, net.device)
        self.to_device = lambda a: backends.to_backend(a, xp, net.device)
        self.opt = xpmlp.make_optimizer("adam", learning_rate=w.lr)
        self.params = list(net.params)
        self.state = self.opt.init(self.params)
        self.train_step = xpmlp.make_train_step(net, self.opt, params=self.params)
        self.key = 0
        self._sync = _make_sync(self.backend)
        self._total = None

    def step(self):
        xp, B = self.xp, self.w.batch
        perm, off = self.next_batch_offset(self.to_device)
        batch = perm[off:off + B]
        Xb, Yb = xp.take(self.X, batch, axis=0), xp.take(self.Y, batch, axis=0)
        self.params, self.state, cost = self.train_step(self.params, self.state, Xb, Yb, self.key)
        self.key += 1
        cost = cost * B
        self._total = cost if self._total is None else self._total + cost
        self._last = (self._total, self.params)

    def sync(self):
        self._sync(getattr(self, "_last", None))

    def host_params(self):
        from xpmlp import backends

        return [(backends.to_numpy(W), backends.to_numpy(b)) for W, b in self.params]

    def info(self):
        return {"dtype": str(self.net.dtype), "optimizer": "xpmlp.optimizers.Adam",
                "inplace": self.train_step.plan.inplace, "host_scalars": self.train_step.plan.host_scalars,
                "fused_adam": self.train_step.plan.fused is not None, "device": str(self.net.device)}

    def gpu_library(self):
        on_cpu = self.backend == "numpy" or "cpu" in str(self.net.device).lower()
        return None if on_cpu else self.backend

    def _block_rows(self, k: int, to_device):
        """The rows of the next k batches (everybody's order), as one index array."""
        idx = []
        for _ in range(k):
            perm, off = self.next_batch_offset(lambda a: a)
            idx.append(perm[off:off + self.w.batch])
        return to_device(np.concatenate(idx))


class XpmlpTrainContender(XpmlpContender):
    """xpmlp's own loop, :func:`xpmlp.train` (``max_iter=1``, eager), on the block's batches.

    Each timed block gathers its k batches (same rows, same order as everybody's) into one
    array and trains one epoch over it without shuffling, so the loop's per-call work
    (the copy of the parameters, snapshots, the one ``float()`` of the epoch cost, the
    finiteness check) is included, amortised over the k steps.
    """

    compile = False

    def __init__(self, backend: str):
        super().__init__(backend)
        self.name = f"xpmlp-{backend}-train"

    def setup(self, w, X, y, device):
        from xpmlp.training import History

        super().setup(w, X, y, device)
        self.history = History()

    def run(self, k):
        from xpmlp.training import train

        xp = self.xp
        idx = self._block_rows(k, self.to_device)
        self.sync()
        t0 = clock()
        Xc, Yc = xp.take(self.X, idx, axis=0), xp.take(self.Y, idx, axis=0)
        train(self.net, Xc, Yc, optimizer=self.opt, max_iter=1, batch_size=self.w.batch, shuffle=False,
              check_convergence=False, history=self.history, compile=self.compile)
        self.params = list(self.net.params)
        self._last = self.params
        self.sync()
        return clock() - t0

    def info(self):
        return dict(super().info(), loop=f"xpmlp.train(max_iter=1, shuffle=False, compile={self.compile}) "
                                         f"per timed block")


class XpmlpCompiledContender(XpmlpContender):
    """xpmlp's compiled epoch runner (:mod:`xpmlp.compile`), as ``xpmlp.train(compile=...)`` runs it:
    JAX, the block's batches as one ``lax.scan`` program (gathered inside from the index array);
    CuPy and PyTorch on CUDA, one captured CUDA graph replayed per batch.

    Compilation happens outside the timed blocks (``warm``, or the capture in the warm-up steps)
    and is reported in ``info()``; a timed block is one runner call over its k batches.
    """

    def __init__(self, backend: str):
        super().__init__(backend)
        self.name = f"xpmlp-{backend}-compiled"
        self.devices = ("gpu",) if backend in ("cupy",) else (("cpu", "gpu") if backend == "jax" else ("gpu",))

    def setup(self, w, X, y, device):
        from xpmlp.compile import epoch_runner, resolve_mode

        super().setup(w, X, y, device)
        self.mode = resolve_mode(True, self.xp, self.net.device)
        if self.mode == "eager":
            raise Unavailable(f"no compiler for {self.backend} on {self.net.device}")
        self.runner = epoch_runner(self.train_step, self.mode)
        self._warmed = set()

    def run(self, k):
        idx = self._block_rows(k, self.to_device)
        if k not in self._warmed and hasattr(self.runner, "warm"):  # compile for this block length, untimed
            self.runner.warm(self.params, self.state, self.X, self.Y, idx, self.w.batch, self.key)
            self._warmed.add(k)
        self.sync()
        t0 = clock()
        self.params, self.state, total = self.runner(self.params, self.state, self.X, self.Y, idx,
                                                     self.w.batch, self.key)
        self.key += k
        self._last = (total, self.params)
        self.sync()
        return clock() - t0

    def info(self):
        return dict(super().info(), compile=self.mode, compile_s=round(self.runner.compile_seconds, 3),
                    failed=getattr(self.runner, "failed", None))


# ----------------------------------------------------------------------------- hand-written JAX
class JaxAnchorContender(Contender):
    """The anchor for the compiled path: a ReLU MLP, softmax cross-entropy and Adam written out in
    plain JAX (row layout, ``x @ W + b``), as a JAX user would, no library around it.

    ``variant``: ``"jit"`` (one ``jax.jit`` step per batch, parameters and state donated) or
    ``"scan"`` (the block's batches in one ``jax.jit`` of ``lax.scan``, gathered inside).
    """

    library = "jax"
    floor_of = "numpy"

    def __init__(self, variant: str):
        self.variant = variant
        self.name = f"jax-{variant}"

    def setup(self, w, X, y, device):
        import jax
        import jax.numpy as jnp

        self.w = w
        want = "gpu" if device == "gpu" else "cpu"
        devs = [d for d in jax.devices() if d.platform == want] if want == "gpu" else jax.devices("cpu")
        if not devs:
            raise Unavailable(f"jax sees no {want} device")
        dev = devs[0]
        rng = np.random.default_rng(0)
        params = []
        for n_in, n_out in zip(w.sizes[:-1], w.sizes[1:]):
            W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
            params.append((W, np.zeros(n_out, np.float32)))
        put = lambda a: jax.device_put(a, dev)  # noqa: E731
        self.params = jax.tree_util.tree_map(put, params)
        def zeros():
            return jax.tree_util.tree_map(jnp.zeros_like, self.params)

        self.opt = (zeros(), zeros(), put(np.zeros((), np.float32)))  # m, v, t (separate buffers: donated)
        self.X, self.y = put(X), put(y.astype(np.int32))
        self.to_device = put
        lr, b1, b2, eps = w.lr, 0.9, 0.999, 1e-8

        def loss(params, xb, yb):
            h = xb
            for W, b in params[:-1]:
                h = jnp.maximum(h @ W + b, 0.0)
            W, b = params[-1]
            logits = h @ W + b
            logz = jax.nn.logsumexp(logits, axis=1)
            return jnp.mean(logz - jnp.take_along_axis(logits, yb[:, None], axis=1)[:, 0])

        def step(params, opt, idx):
            m, v, t = opt
            xb, yb = jnp.take(self.X, idx, axis=0), jnp.take(self.y, idx, axis=0)
            J, g = jax.value_and_grad(loss)(params, xb, yb)
            t = t + 1.0
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            a = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            params = jax.tree_util.tree_map(lambda p, m, v: p - a * m / (jnp.sqrt(v) + eps), params, m, v)
            return params, (m, v, t), J

        def block(params, opt, rows):
            def body(carry, idx):
                params, opt, J = step(*carry, idx)
                return (params, opt), J
            (params, opt), Js = jax.lax.scan(body, (params, opt), rows)
            return params, opt, jnp.sum(Js)

        self._jit_step = jax.jit(step, donate_argnums=(0, 1))
        self._jit_block = jax.jit(block, donate_argnums=(0, 1))
        self._jax = jax
        self._compiled = {}

    def run(self, k):
        jnp = self._jax.numpy
        idx = []
        for _ in range(k):
            perm, off = self.next_batch_offset(lambda a: a)
            idx.append(perm[off:off + self.w.batch])
        rows = self.to_device(np.stack(idx).astype(np.int32))
        if self.variant == "scan" and k not in self._compiled:
            self._compiled[k] = self._jit_block.lower(self.params, self.opt, rows).compile()
        self._jax.block_until_ready(self.params)
        t0 = clock()
        if self.variant == "scan":
            self.params, self.opt, J = self._compiled[k](self.params, self.opt, rows)
        else:
            for i in range(k):
                self.params, self.opt, J = self._jit_step(self.params, self.opt, rows[i])
        self._jax.block_until_ready((self.params, J))
        del jnp
        return clock() - t0

    def host_params(self):
        return [(np.asarray(W).T, np.asarray(b)[:, None]) for W, b in self.params]

    def info(self):
        return {"dtype": "float32", "jax": self._jax.__version__, "device": str(self.X.devices()),
                "what": "plain JAX + Adam written out, " + ("jit per step (donated)" if self.variant == "jit"
                                                            else "lax.scan over the block under one jit")}


def _make_sync(backend: str):
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return lambda last: torch.cuda.synchronize()
    if backend == "cupy":
        import cupy

        return lambda last: cupy.cuda.get_current_stream().synchronize()
    if backend == "jax":
        import jax

        return lambda last: jax.block_until_ready(last) if last is not None else None
    return lambda last: None


class _GpuMemory:
    def __init__(self, reset, peak):
        self.reset, self._peak = reset, peak

    def peak_mb(self):
        return self._peak() / 2**20


def _gpu_memory(library: str):
    """Peak device memory of the allocator since reset(), beyond what was in use at reset()."""
    if library == "torch":
        import torch

        state = {}

        def reset():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            state["base"] = torch.cuda.memory_allocated()

        return _GpuMemory(reset, lambda: torch.cuda.max_memory_allocated() - state["base"])
    if library == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        state = {}

        def reset():
            cupy.cuda.get_current_stream().synchronize()
            pool.free_all_blocks()  # the pool then holds only what is in use;
            state["base"] = pool.total_bytes()  # it grows to the peak and never gives back

        return _GpuMemory(reset, lambda: pool.total_bytes() - state["base"])
    if library == "jax":
        import jax

        d = jax.devices()[0]
        state = {}

        def reset():
            state["base"] = (d.memory_stats() or {}).get("bytes_in_use", 0)

        # JAX cannot reset its peak: this is the process's peak (data upload included) minus the
        # memory in use after setup, so it can underestimate.
        return _GpuMemory(reset, lambda: (d.memory_stats() or {}).get("peak_bytes_in_use", 0) - state["base"])
    return None


# ----------------------------------------------------------------------------- PyTorch
class TorchContender(Contender):
    """nn.Sequential + F.cross_entropy + torch.optim.Adam, the usual eager loop.

    ``variant``: ``"eager"`` (Adam with its defaults: single-tensor for-loop on CPU,
    foreach on CUDA), ``"fused"`` (``Adam(fused=True)``), ``"compile"``
    (``torch.compile`` of forward + loss, backward through AOTAutograd, fused Adam).
    """

    library = "torch"
    floor_of = "torch"

    def __init__(self, variant: str):
        self.variant = variant
        self.name = {"eager": "torch-eager", "fused": "torch-fused-adam", "compile": "torch-compile",
                     "reduce-overhead": "torch-reduce-overhead"}[variant]
        if variant == "reduce-overhead":  # CUDA graphs: a GPU thing
            self.devices = ("gpu",)

    def setup(self, w, X, y, device):
        import torch
        import torch.nn.functional as F

        self.w = w
        if device == "gpu":
            if not torch.cuda.is_available():
                raise Unavailable("torch sees no CUDA device")
            dev = torch.device("cuda")
        else:
            dev = torch.device("cpu")
        self.dev = dev
        torch.manual_seed(0)
        layers = []
        for l, (n_in, n_out) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
            layers.append(torch.nn.Linear(n_in, n_out))
            if l < len(w.sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.model = model = torch.nn.Sequential(*layers).to(dev)
        kwargs = {"fused": True} if self.variant in ("fused", "compile", "reduce-overhead") else {}
        try:
            self.opt = torch.optim.Adam(model.parameters(), lr=w.lr, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise Unavailable(f"Adam(fused=True) not supported here: {exc}") from None
        self.X = torch.from_numpy(X).to(dev)
        self.y = torch.from_numpy(y).to(dev)

        def loss_fn(xb, yb):
            return F.cross_entropy(model(xb), yb)

        if self.variant == "compile":
            self.loss_fn = torch.compile(loss_fn)
        elif self.variant == "reduce-overhead":  # torch.compile with CUDA graphs
            self.loss_fn = torch.compile(loss_fn, mode="reduce-overhead")
        else:
            self.loss_fn = loss_fn
        self.to_device = lambda a: torch.from_numpy(a).to(dev)
        self._torch = torch

    def step(self):
        perm, off = self.next_batch_offset(self.to_device)
        idx = perm[off:off + self.w.batch]
        xb = self.X.index_select(0, idx)
        yb = self.y.index_select(0, idx)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(xb, yb)
        loss.backward()
        self.opt.step()

    def sync(self):
        if self.dev.type == "cuda":
            self._torch.cuda.synchronize()

    def host_params(self):
        lin = [m for m in self.model if isinstance(m, self._torch.nn.Linear)]
        return [(m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy()) for m in lin]

    def info(self):
        torch = self._torch
        g = self.opt.param_groups[0]
        impl = "fused" if g.get("fused") else ("foreach" if g.get("foreach") else
                                               ("default (for-loop on CPU, foreach on CUDA)"))
        d = {"dtype": str(self.X.dtype), "optimizer": f"torch.optim.Adam {impl}", "threads": torch.get_num_threads(),
             "torch": torch.__version__, "device": str(self.dev)}
        if self.variant in ("compile", "reduce-overhead"):
            mode = "default" if self.variant == "compile" else "reduce-overhead (CUDA graphs)"
            d["compiled"] = f"torch.compile(forward + cross_entropy), mode {mode}"
        return d

    def gpu_library(self):
        return "torch" if self.dev.type == "cuda" else None


# ----------------------------------------------------------------------------- scikit-learn
class SklearnContender(Contender):
    """scikit-learn's MLPClassifier (adam, lr 1e-3, alpha=0, relu), fed float32.

    Steps are taken with ``partial_fit`` on the concatenated batches of a timed block
    (``shuffle=False``, ``batch_size`` = the workload's), so it trains on exactly the
    same batches in the same order; the gather of those batches is inside the timing.
    One ``partial_fit`` call per block: its per-call validation is amortised over the block.
    """

    name = "sklearn"
    library = "sklearn"
    floor_of = "numpy"
    devices = ("cpu",)

    def setup(self, w, X, y, device):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        self.w, self.X, self.y = w, X, y
        self.classes = np.arange(w.n_classes)
        self.clf = MLPClassifier(hidden_layer_sizes=tuple(w.sizes[1:-1]), activation="relu", solver="adam",
                                 alpha=0.0, batch_size=w.batch, learning_rate_init=w.lr, shuffle=False,
                                 random_state=0, max_iter=1, tol=0.0, n_iter_no_change=10**9)

    def run(self, k):
        idx = []
        for _ in range(k):
            perm, off = self.next_batch_offset(lambda a: a)
            idx.append(perm[off:off + self.w.batch])
        t0 = clock()
        idx = np.concatenate(idx)
        self.clf.partial_fit(self.X[idx], self.y[idx], classes=self.classes)
        return clock() - t0

    def host_params(self):
        if not hasattr(self.clf, "coefs_"):  # sklearn initialises its weights in the first partial_fit
            return None
        return [(W.T, b) for W, b in zip(self.clf.coefs_, self.clf.intercepts_)]

    def info(self):
        import sklearn

        return {"dtype": str(self.clf.coefs_[0].dtype), "sklearn": sklearn.__version__,
                "optimizer": "sklearn AdamOptimizer", "calls": "one partial_fit per timed block"}


# ----------------------------------------------------------------------------- the GEMM floor
class FloorContender(Contender):
    """Only the GEMMs of a training step, on preallocated arrays, with the library's matmul.

    Per layer: forward ``Z = W A_prev``, ``dW = dZ A_prev^T`` and (layers 2..L)
    ``dA_prev = W^T dZ``, written into preallocated outputs (``out=``). No gather, no
    element-wise work, no optimizer: the time below which no implementation can go
    with that library's GEMM.
    """

    is_floor = True

    def __init__(self, library: str):
        self.lib = library
        self.name = f"floor-{library}"
        self.library = library
        self.floor_of = library
        self.devices = {"numpy": ("cpu",), "torch": ("cpu", "gpu"), "cupy": ("gpu",)}[library]

    def setup(self, w, X, y, device):
        self.w = w
        self.on_gpu = device == "gpu"
        m = w.batch
        rng = np.random.default_rng(0)
        host = []
        for n_in, n_out in zip(w.sizes[:-1], w.sizes[1:]):
            host.append(dict(W=rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.05,
                             A=rng.standard_normal((n_in, m), dtype=np.float32),
                             dZ=rng.standard_normal((n_out, m), dtype=np.float32)))
        if self.lib == "numpy":
            xp_matmul = np.matmul
            conv = np.asarray
            self._sync = lambda: None
        elif self.lib == "torch":
            import torch

            dev = torch.device("cuda" if device == "gpu" else "cpu")
            if device == "gpu" and not torch.cuda.is_available():
                raise Unavailable("torch sees no CUDA device")
            xp_matmul = torch.matmul
            conv = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
            self._sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        else:
            import cupy

            try:
                cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:
                raise Unavailable(f"CuPy sees no GPU: {exc}") from None
            xp_matmul = cupy.matmul
            conv = cupy.asarray
            self._sync = cupy.cuda.get_current_stream().synchronize
        self.matmul = xp_matmul
        # Column layout (xpmlp's: A (n_in, m), Z = W A) for numpy/cupy; row layout (nn.Linear's:
        # A (m, n_in), Z = A W^T) for torch. Same GEMMs, same FLOPs, each library's natural form.
        self.row = self.lib == "torch"
        self.layers = []
        for l, h in enumerate(host):
            if self.row:
                h = dict(W=h["W"], A=np.ascontiguousarray(h["A"].T), dZ=np.ascontiguousarray(h["dZ"].T))
            d = {k: conv(v) for k, v in h.items()}
            d["Z"] = conv(np.empty_like(h["dZ"]))
            d["dW"] = conv(np.empty_like(h["W"]))
            d["dA"] = conv(np.empty_like(h["A"])) if l > 0 else None
            self.layers.append(d)

    def step(self):
        mm = self.matmul
        if self.row:
            for d in self.layers:
                mm(d["A"], d["W"].T, out=d["Z"])  # Z = A_prev W^T
            for d in reversed(self.layers):
                mm(d["dZ"].T, d["A"], out=d["dW"])  # dW = dZ^T A_prev
                if d["dA"] is not None:
                    mm(d["dZ"], d["W"], out=d["dA"])  # dA_prev = dZ W
            return
        for d in self.layers:
            mm(d["W"], d["A"], out=d["Z"])  # Z = W A_prev
        for d in reversed(self.layers):
            mm(d["dZ"], d["A"].T, out=d["dW"])  # dW = dZ A_prev^T
            if d["dA"] is not None:
                mm(d["W"].T, d["dZ"], out=d["dA"])  # dA_prev = W^T dZ

    def sync(self):
        self._sync()

    def info(self):
        return {"dtype": "float32", "what": "GEMMs only, out= preallocated, "
                f"{'row (nn.Linear)' if self.row else 'column (xpmlp)'} layout"}

    def gpu_library(self):
        return self.lib if self.on_gpu else None


CONTENDERS = {
    "xpmlp-numpy": lambda: XpmlpContender("numpy"),
    "xpmlp-torch": lambda: XpmlpContender("torch"),
    "xpmlp-jax": lambda: XpmlpContender("jax"),
    "xpmlp-cupy": lambda: XpmlpContender("cupy"),
    "xpmlp-numpy-train": lambda: XpmlpTrainContender("numpy"),
    "xpmlp-cupy-train": lambda: XpmlpTrainContender("cupy"),
    "xpmlp-jax-compiled": lambda: XpmlpCompiledContender("jax"),
    "xpmlp-cupy-compiled": lambda: XpmlpCompiledContender("cupy"),
    "xpmlp-torch-compiled": lambda: XpmlpCompiledContender("torch"),
    "jax-jit": lambda: JaxAnchorContender("jit"),
    "jax-scan": lambda: JaxAnchorContender("scan"),
    "torch-reduce-overhead": lambda: TorchContender("reduce-overhead"),
    "torch-eager": lambda: TorchContender("eager"),
    "torch-fused-adam": lambda: TorchContender("fused"),
    "torch-compile": lambda: TorchContender("compile"),
    "sklearn": SklearnContender,
    "floor-numpy": lambda: FloorContender("numpy"),
    "floor-torch": lambda: FloorContender("torch"),
    "floor-cupy": lambda: FloorContender("cupy"),
}


def make_contender(name: str) -> Contender:
    if name not in CONTENDERS:
        raise ValueError(f"unknown contender {name!r}; expected one of {sorted(CONTENDERS)}")
    return CONTENDERS[name]()
