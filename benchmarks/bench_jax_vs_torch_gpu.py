"""The tfsts training step under the JAX backend against the same architecture in
PyTorch with cuDNN, on one GPU, float32 and bfloat16: one short prepared run.

TensorFlow is not needed (the model code is keras.ops only; tests/test_backend_jax.py):
install `jax[cuda12]`, keras, ml-collections, ml_dtypes, numpy and torch, then

    KERAS_BACKEND=jax python -m benchmarks.bench_jax_vs_torch_gpu [--models x3d_s,ircsn_50]
        [--dtypes float32,bfloat16] [--sizes small,ref] [--pairs 5] [--steps 5] [--device cuda]

Each timing is `--steps` jitted training steps (forward + backward + SGD with momentum,
dropout 0 on both sides) after a warm-up; PyTorch and JAX alternate pair by pair and
the median over pairs is reported. float32 is true float32 on both sides (TF32 off:
PyTorch's `allow_tf32=False`, JAX's matmul precision "highest"); bfloat16 is Keras'
`mixed_bfloat16` policy against `torch.autocast(bfloat16)`. Sizes: "small" is batch 8
at 8x112x112, "ref" batch 4 at the model's reference training size
(bench_vs_torch.REFERENCE_SIZES). `--device cpu` runs the same on the CPU (a smoke test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks.timing import split_choices

os.environ.setdefault("KERAS_BACKEND", "jax")

# The same models, sizes and input normalisation as the CPU benchmark (a stdlib-only import).
from benchmarks.bench_vs_torch import MEAN, MODELS, REFERENCE_SIZES, STD  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--sizes", default="small,ref")
    parser.add_argument("--small-batch", type=int, default=8)
    parser.add_argument("--ref-batch", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    split_choices(parser, args, {"models": MODELS, "dtypes": ("float32", "bfloat16"), "sizes": ("small", "ref")})
    return args


def jax_step(name, batch, frames, dtype, steps):
    """A callable running `steps` jitted training steps of the tfsts model under JAX."""
    import jax
    import keras
    import numpy as np

    from tfsts import models

    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    jax.config.update("jax_default_matmul_precision", "highest" if dtype == "float32" else "default")
    model = models.build_model(name, 400, input_shape=(*frames, 3), sts=False, dropout=0.0)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.uniform(0, 255, size=(batch, *frames, 3)).astype("float32"))
    y = jax.numpy.asarray(rng.integers(0, 400, size=(batch,)).astype("int32"))

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits.astype("float32"), from_logits=True)
        return loss.mean(), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def step(state, x, y):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, (trainable, non_trainable, opt_vars)

    state = [
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    ]
    holder = {"state": state}

    def run():
        loss = None
        for _ in range(steps):
            loss, holder["state"] = step(holder["state"], x, y)
        return float(jax.block_until_ready(loss))

    return models_count(model), run


def models_count(model) -> int:
    from tfsts.models.blocks import count_params

    return count_params(model)


def torch_step(name, batch, frames, dtype, steps, device):
    import torch

    from benchmarks.torch_models import BUILDERS, count_params

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    net = BUILDERS[name](dropout=0.0).to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1, 1)
    x = torch.rand(batch, 3, *frames, device=device) * 255.0
    y = torch.randint(0, 400, (batch,), device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def run():
        loss = None
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(net((x - mean) / std).float(), y)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    return count_params(net), run


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import jax
        import keras
        import torch
    except ImportError as error:
        print(f"bench_jax_vs_torch_gpu: {error.name} is not installed (needs jax, keras and torch)", file=sys.stderr)
        return 1
    if keras.backend.backend() != "jax":
        print(f"bench_jax_vs_torch_gpu: run with KERAS_BACKEND=jax (got {keras.backend.backend()})", file=sys.stderr)
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_jax_vs_torch_gpu: no CUDA device for PyTorch; --device cpu runs the smoke test", file=sys.stderr)
        return 1
    print(f"JAX {jax.__version__} on {jax.devices()[0]}, PyTorch {torch.__version__} "
          f"({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), {args.steps} steps per timing, "
          f"median of {args.pairs} alternated pairs", flush=True)
    rows = []
    for name in args.models:
        for size in args.sizes:
            batch, frames = (args.small_batch, (8, 112, 112)) if size == "small" else (args.ref_batch, REFERENCE_SIZES[name])
            for dtype in args.dtypes:
                jax_params, jax_run = jax_step(name, batch, frames, dtype, args.steps)
                torch_params, torch_run = torch_step(name, batch, frames, dtype, args.steps, args.device)
                if jax_params != torch_params:
                    print(f"bench_jax_vs_torch_gpu: {name}: parameter counts differ ({jax_params:,} vs {torch_params:,})",
                          file=sys.stderr)
                    return 1
                jax_run(), torch_run()  # compile / cuDNN autotune
                times = ([], [])
                for i in range(args.pairs):
                    for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                        start = time.perf_counter()
                        (jax_run, torch_run)[k]()
                        times[k].append((time.perf_counter() - start) / args.steps)
                jax_s, torch_s = statistics.median(times[0]), statistics.median(times[1])
                row = [name, f"{batch}x{'x'.join(map(str, frames))}", dtype, f"{jax_params:,}", f"{jax_s * 1e3:.1f}",
                       f"{torch_s * 1e3:.1f}", f"{jax_s / torch_s:.2f}"]
                rows.append(row)
                print("  " + " | ".join(row), flush=True)
    headers = ["model", "input", "dtype", "params (both)", "JAX ms / step", "PyTorch ms / step", "JAX / PyTorch"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
