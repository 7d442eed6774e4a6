"""tfsts against the same architecture in PyTorch on this machine's CPU: a training step
(forward + backward + SGD with momentum) and inference (forward only), float32, plain
convs (sts=False), both frameworks on 2 threads, alternated call by call in one run (the
order flips every pair), median over the pairs.

Each framework runs in a worker process of its own (neither shares the other's heap or
thread pools), which, when the parent asks, idles `--gap` seconds, makes one untimed call
and then times `--calls` back-to-back calls (a training loop's steady state). In one
process with no gap, a TF call right after a PyTorch call was up to a third slower than
alone (x3d_s inference: 112 ms against 78-83 ms). `--in-process` keeps that one-process
alternation for comparison.

The PyTorch models are written from the published definitions in
benchmarks/torch_models.py; their parameter counts are printed and must equal tfsts's
(the script stops otherwise). PyTorch is benchmark-only: `pip install -e .[bench]`.

    python -m benchmarks.bench_vs_torch [--models r2plus1d_18,x3d_s] [--sizes small,ref]
        [--passes train,infer,served] [--tf-kernels onednn,eigen] [--pairs 5] [--threads 2]
        [--calls 2] [--gap 0.3] [--cpu-isa native|avx2] [--in-process]

TF kernels: a TF worker per choice. "default" is TF as this environment loads it (oneDNN on
AVX-512 VNNI CPUs, else Eigen, unless TF_ENABLE_ONEDNN_OPTS says otherwise: tfsts/__init__.py);
"onednn" and "eigen" set TF_ENABLE_ONEDNN_OPTS=1 / 0 for that worker. With several, the
workers take turns (the order rotating), and each TF row is against the same PyTorch timings.

Passes: "train" (the step), "infer" (the model's forward in inference), "served" (inference
with each BN folded into its conv on both sides: `tfsts.models.fold_batch_norms`, what
`tfsts.export` serves, against `torch.fx.experimental.optimization.fuse`).

Sizes: "small" is batch 2 at 8x112x112; "ref" is batch 1 at the model's reference
training size (REFERENCE_SIZES). The ratio is tfsts ms / PyTorch ms of the medians (below 1:
tfsts faster); "per-pair ratio" is the median of the pairs' own ratios, which a machine that
drifts during the run (this 2-core VM's speed moved by a quarter within an hour) moves less.
Denormals are flushed to zero on both sides (TF does so by default on CPU; PyTorch via
`torch.set_flush_denormal(True)`).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time

import tfsts
from benchmarks.timing import paired_median_ratio, split_choices, tf_sgd_train_step

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("r2plus1d_18", "ircsn_50", "ipcsn_50", "x3d_s", "slowonly_r50", "resnet3d_18")
SMALL = (2, (8, 112, 112))
# Batch 1 at each model's training input: VMZ R(2+1)D 8x112, CSN 32x224, X3D-S 13x160,
# SlowOnly 8x224 (pytorchvideo's slow_r50 trains at 8x224), Hara's ResNets 16x112.
REFERENCE_SIZES = {
    "r2plus1d_18": (8, 112, 112),
    "ircsn_50": (32, 224, 224),
    "ipcsn_50": (32, 224, 224),
    "x3d_s": (13, 160, 160),
    "slowonly_r50": (8, 224, 224),
    "resnet3d_18": (16, 112, 112),
}
TF_KERNELS = {"default": None, "onednn": "1", "eigen": "0"}  # --tf-kernels: each TF worker's TF_ENABLE_ONEDNN_OPTS
# --cpu-isa avx2: the instruction sets both frameworks' runtime-dispatched kernels may use, capped
# at AVX2 (PyTorch's own kernels, oneDNN's in either framework, MKL's GEMMs), to read on an
# AVX-512 machine what an AVX2 CPU would pick. TF's Eigen kernels are compiled, not dispatched:
# the same on both kinds of CPU. The microarchitecture (clock, caches, FMA units) stays this one's.
CPU_ISA_ENV = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
MEAN = (123.675, 116.28, 103.53)  # the tfsts models' "torch" InputNormalization
STD = (58.395, 57.12, 57.375)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default="small,ref", help="comma list of 'small' and 'ref'")
    parser.add_argument("--passes", default="train,infer", help="comma list of 'train', 'infer' and 'served'")
    parser.add_argument("--tf-kernels", default="default", help="comma list of 'default', 'onednn' and 'eigen': a TF worker each")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gap", type=float, default=0.3, help="idle seconds before each timing")
    parser.add_argument("--calls", type=int, default=2, help="back-to-back calls per timing, after an untimed one")
    parser.add_argument("--cpu-isa", choices=tuple(CPU_ISA_ENV), default="native",
                        help="avx2: cap both frameworks' run-time kernel dispatch at AVX2 (CPU_ISA_ENV)")
    parser.add_argument("--in-process", action="store_true",
                        help="both frameworks in this process, no gap (the interference the workers avoid)")
    args = parser.parse_args(argv)
    split_choices(parser, args, {"models": MODELS, "sizes": ("small", "ref"), "passes": ("train", "infer", "served"),
                                 "tf_kernels": tuple(TF_KERNELS)})
    if not args.tf_kernels:
        parser.error("--tf-kernels: name at least one of " + ", ".join(TF_KERNELS))
    if args.in_process and len(args.tf_kernels) > 1:
        parser.error("--in-process runs one TF (this process's); several --tf-kernels need the workers")
    if args.pairs < 1 or args.calls < 1:
        parser.error("--pairs and --calls must be at least 1")
    return args


def tfsts_runners(name, batch, frames, seed=0):
    """(params, {pass: callable}) for the tfsts model, inputs fixed."""
    import numpy as np
    import tensorflow as tf

    from tfsts import models
    from tfsts.models.blocks import count_params
    from tfsts.models.graph import fold_batch_norms

    model = models.build_model(name, 400, input_shape=(*frames, 3), sts=False)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(0, 255, size=(batch, *frames, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 400, size=(batch,)).astype("int32"))
    train_step = tf_sgd_train_step(model, x, y)

    @tf.function
    def infer():
        return model(x, training=False)

    folded = fold_batch_norms(model)

    @tf.function
    def served():
        return folded(x, training=False)

    return count_params(model), {"train": lambda: train_step().numpy(), "infer": lambda: infer().numpy(),
                                 "served": lambda: served().numpy()}


def torch_runners(name, batch, frames, seed=0):
    import torch

    from benchmarks.torch_models import BUILDERS, count_params

    torch.manual_seed(seed)
    net = BUILDERS[name]()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1, 1)
    x = torch.rand(batch, 3, *frames) * 255.0
    y = torch.randint(0, 400, (batch,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        net.train()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net((x - mean) / std), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    def infer():
        net.eval()
        with torch.inference_mode():
            return net((x - mean) / std).sum().item()

    fused = fused_for_inference(net)

    def served():
        with torch.inference_mode():
            return fused((x - mean) / std).sum().item()

    return count_params(net), {"train": train_step, "infer": infer, "served": served}


def fused_for_inference(net):
    """PyTorch's own BN folding for inference (`torch.fx.experimental.optimization.fuse`, each
    Conv3d + BatchNorm3d pair), on a copy of `net` in eval mode; `net` itself where fx cannot
    trace it (a warning says which)."""
    import copy

    from torch.fx.experimental import optimization

    try:
        return optimization.fuse(copy.deepcopy(net).eval())
    except Exception as error:  # torch.fx cannot trace some Python control flow
        print(f"bench_vs_torch: torch.fx cannot fuse {type(net).__name__} ({type(error).__name__}); "
              "its 'served' pass runs unfused", file=sys.stderr, flush=True)
        return copy.deepcopy(net).eval()


def set_threads(framework: str, threads: int) -> None:
    if framework == "tfsts":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    else:
        import torch

        torch.set_num_threads(threads)
        # TF's CPU threads flush denormals to zero; PyTorch's do not unless asked, and a few
        # SGD steps on random labels then slowed its training steps 10-20x in some runs here.
        torch.set_flush_denormal(True)


def runners(framework: str, name: str, batch: int, frames):
    return (tfsts_runners if framework == "tfsts" else torch_runners)(name, batch, frames)


def worker(framework: str, name: str, batch: int, frames, threads: int, calls: int, conn) -> None:
    """A worker process: builds one framework's model, sends its parameter count, then
    answers each pass name with the seconds per call of `calls` back-to-back calls after
    an untimed one (the steady state of a training loop; "stop" ends it)."""
    set_threads(framework, threads)
    params, fns = runners(framework, name, batch, frames)
    conn.send(params)
    while (pass_ := conn.recv()) != "stop":
        fns[pass_]()
        start = time.perf_counter()
        for _ in range(calls):
            fns[pass_]()
        conn.send((time.perf_counter() - start) / calls)


class Workers:
    """A worker process per TF kernel choice, then PyTorch's, for one model and size."""

    def __init__(self, name: str, batch: int, frames, threads: int, calls: int, tf_kernels: list[str]):
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for framework, kernels in [("tfsts", k) for k in tf_kernels] + [("torch", None)]:
            parent, child = context.Pipe()
            proc = context.Process(target=worker, args=(framework, name, batch, frames, threads, calls, child), daemon=True)
            with onednn_env(kernels):  # a spawned child starts with the parent's environment as it is now
                proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.params = [conn.recv() for conn in self.conns]

    def timer(self, k: int, pass_: str):
        def timed() -> float:
            self.conns[k].send(pass_)
            return self.conns[k].recv()

        return timed

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            conn.send("stop")
            proc.join()


def apply_tf_kernels(kernels: str | None) -> None:
    """Set TF_ENABLE_ONEDNN_OPTS for `kernels` (a TF_KERNELS name; "default" or None: leave it);
    a TF loaded after this takes it."""
    if TF_KERNELS.get(kernels) is not None:
        os.environ[tfsts.ONEDNN_ENV] = TF_KERNELS[kernels]


@contextlib.contextmanager
def onednn_env(kernels: str | None):
    """`apply_tf_kernels` while inside; the environment as it was after."""
    saved = os.environ.get(tfsts.ONEDNN_ENV)
    apply_tf_kernels(kernels)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(tfsts.ONEDNN_ENV, None)
        else:
            os.environ[tfsts.ONEDNN_ENV] = saved


def alternated_times(timers, pairs: int, warmup: int, gap: float = 0.0):
    """Seconds of timed callables (each returns the seconds its call took) run round by round,
    the order rotating each round (for two: flipping each pair), `gap` idle seconds before each
    call: a list per callable."""
    for _ in range(warmup):
        for timer in timers:
            timer()
    times = [[] for _ in timers]
    for i in range(pairs):
        shift = i % len(timers)
        for k in list(range(len(timers)))[shift:] + list(range(len(timers)))[:shift]:
            time.sleep(gap)
            times[k].append(timers[k]())
    return times


def timed(fn):
    def call() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return call


def load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update(CPU_ISA_ENV[args.cpu_isa])  # before either framework loads, here and in the workers
    try:
        import torch
    except ImportError:
        print("bench_vs_torch: PyTorch is not installed; install the benchmark extra: pip install -e .[bench] "
              "(torch==2.13.0)", file=sys.stderr)
        return 1
    from benchmarks.timing import print_table

    if args.in_process:
        apply_tf_kernels(args.tf_kernels[0])
    import tensorflow as tf

    mode = ("one process, one call per timing, no gap" if args.in_process else
            f"a worker process each, {args.calls} calls per timing after an untimed one, {args.gap:g} s idle before")
    print(f"tfsts (TF {tf.__version__}, tf.function) vs PyTorch {torch.__version__}, CPU, float32, {args.threads} "
          f"threads each, sts=False, median of {args.pairs} alternated pairs, {mode}; CPU ISA {args.cpu_isa} (PyTorch dispatches {torch.backends.cpu.get_cpu_capability()}); TF kernels per row: default = {tfsts.cpu_kernels()}, onednn = TF_ENABLE_ONEDNN_OPTS=1, eigen = 0; {load()} at start", flush=True)
    if args.in_process:
        for framework in ("tfsts", "torch"):
            set_threads(framework, args.threads)
    rows = []
    for name in args.models:
        for size in args.sizes:
            batch, frames = SMALL if size == "small" else (1, REFERENCE_SIZES[name])
            if args.in_process:
                fns = [runners(framework, name, batch, frames) for framework in ("tfsts", "torch")]
                params = [p for p, _ in fns]
                timers = {pass_: [timed(f[pass_]) for _, f in fns] for pass_ in args.passes}
                workers = None
            else:
                workers = Workers(name, batch, frames, args.threads, args.calls, args.tf_kernels)
                params = workers.params
                timers = {pass_: [workers.timer(k, pass_) for k in range(len(params))] for pass_ in args.passes}
            *tf_params, torch_params = params
            if any(p != torch_params for p in tf_params):
                print(f"bench_vs_torch: {name}: parameter counts differ (tfsts {tf_params[0]:,}, PyTorch "
                      f"{torch_params:,}); benchmarks/torch_models.py no longer matches the tfsts model", file=sys.stderr)
                return 1
            for pass_ in args.passes:
                gap = 0.0 if args.in_process else args.gap
                *tf_runs, torch_times = alternated_times(timers[pass_], args.pairs, args.warmup, gap)
                torch_s = statistics.median(torch_times)
                for kernels, tf_times in zip(args.tf_kernels, tf_runs):
                    tf_s = statistics.median(tf_times)
                    pair_ratio = paired_median_ratio(tf_times, torch_times)
                    row = [name, f"{batch}x{'x'.join(map(str, frames))}", f"{torch_params:,}", pass_, kernels,
                           f"{tf_s * 1e3:.0f}", f"{torch_s * 1e3:.0f}", f"{tf_s / torch_s:.2f}", f"{pair_ratio:.2f}"]
                    rows.append(row)
                    print("  " + " | ".join(row), flush=True)
            if workers is not None:
                workers.close()
            del timers
    print(f"done; {load()} at end")
    print_table(["model", "input", "params (both)", "pass", "TF kernels", "tfsts ms", "PyTorch ms", "tfsts / PyTorch",
                 "per-pair ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
