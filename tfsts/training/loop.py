"""The training loop: one custom loop on tf.distribute for every strategy.

Default strategy (CPU / one GPU), MirroredStrategy (local GPUs) and
MultiWorkerMirroredStrategy (TF_CONFIG) run the same code: `strategy.run` of one replica
step over `distribute_datasets_from_function`, the loss summed over a replica's examples
and divided by the global batch. Keras' `fit` is not used: under MultiWorkerMirrored it
fails (keras-team/keras#20585).

RandAugment (config.data.sources.<name>.randaugment_magnitude / _num_ops) runs here, in
the replica step on that source's clips of the batch, not in tf.data: Keras augmentation
layers are stateful, and a stateful op would make the input iterator uncheckpointable
(tfsts/data/augment.py).

Checkpoints (tf.train.CheckpointManager in DIR/checkpoints): model, optimizer, step, the
model's RNG (dropout, drop-path) state, the RandAugment layers' RNG state and, on one
device, the input iterator, so a killed run resumes exactly. tf.distribute's
DistributedIterator (several replicas) cannot be checkpointed in TF 2.21 ("expecting
iterator to be a trackable object"); there the resumed run skips the batches the finished
steps consumed (same position for a deterministic pipeline).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import weakref
from typing import Callable, Mapping

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from tfsts.training import config as config_lib
from tfsts.training import logs
from tfsts.training import losses
from tfsts.training import modeling
from tfsts.training import optim

DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class TrainResult:
    step: int
    workdir: str
    history: list  # the JSON-lines records this call wrote
    eval: dict | None = None
    init_report: dict | None = None


# --- Strategy -----------------------------------------------------------------------------
def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """"auto": MultiWorkerMirrored when TF_CONFIG names several tasks, Mirrored when there
    are several GPUs, else the default strategy."""
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # Logical CPUs: collective all-reduce of two strategies in one process clash
        # ("Shape mismatch in the collective instance"); reducing to one device does not.
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "default":
        return tf.distribute.get_strategy()
    raise config_lib.ConfigError(
        f"config.train.strategy = {name!r}: must be one of auto, default, mirrored, multi_worker."
    )


def worker_role(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """(is_chief, task_id): the chief writes the workdir; other workers their own folder."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
    return is_chief, int(task_id)


# --- Set-up ---------------------------------------------------------------------------------
def set_up_process(config: ml_collections.ConfigDict) -> None:
    """Seeds, op determinism and the dtype policy (process-global: call before building)."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_dtype_policy(config.train.precision)


def source_classes(config: ml_collections.ConfigDict) -> dict[str, int]:
    return {name: int(s.num_classes) for name, s in config.data.sources.items()}


def rng_state_variables(model: keras.Model) -> list:
    """The model's seed-generator states (dropout): not in model.weights, so not in a
    Checkpoint(model=...) by default; checkpointed beside it for exact resumes."""
    weights = {id(v) for v in model.weights}
    return [v.value if hasattr(v, "value") else v for v in model.variables if id(v) not in weights]


RANDAUGMENT_SEED_STRIDE = 7919  # source i's RandAugment seed: config.seed + stride * (i + 1)


def make_randaugments(config: ml_collections.ConfigDict) -> dict:
    """{source index: tfsts.data.ClipAugment} (Keras RandAugment, one draw per clip) for
    the sources with RandAugment on, seeded from config.seed (distinct per source)."""
    from tfsts.data.augment import clip_randaugment

    return {
        index: clip_randaugment(num_ops, magnitude, seed=int(config.seed) + RANDAUGMENT_SEED_STRIDE * (index + 1))
        for index, (num_ops, magnitude) in config_lib.randaugment_sources(config).items()
    }


def randaugment_state_variables(augments: Mapping[int, object]) -> list:
    """The seed-generator states of the augmentation layers, as tf.Variables: a Keras layer
    given to tf.train.Checkpoint as such saves none of them (they are not weights)."""
    return [v.value if hasattr(v, "value") else v for i in sorted(augments) for v in augments[i].layer.variables]


def augment_sources(batch: Mapping[str, tf.Tensor], augments: Mapping[int, Callable]) -> dict:
    """The batch with each source's augmentation applied to that source's clips only
    (gathered by "source", augmented, scattered back: one draw per chosen clip)."""
    if not augments:
        return dict(batch)
    frames = batch["frames"]
    source = tf.cast(batch["source"], tf.int32) if "source" in batch else tf.zeros(tf.shape(frames)[:1], tf.int32)
    for index, augment in augments.items():
        rows = tf.where(tf.equal(source, index))
        frames = tf.tensor_scatter_nd_update(frames, rows, tf.cast(augment(tf.gather_nd(frames, rows)), frames.dtype))
    return {**batch, "frames": frames}


def _checkpoint_dir(workdir: str, is_chief: bool, task_id: int) -> str:
    return os.path.join(workdir, "checkpoints") if is_chief else os.path.join(workdir, "workers", f"worker_{task_id}")


def _checkpoint_steps(directory: str) -> dict[int, str]:
    state = tf.train.get_checkpoint_state(directory) if tf.io.gfile.isdir(directory) else None
    if state is None:
        return {}
    return {int(p.rsplit("-", 1)[1]): p for p in state.all_model_checkpoint_paths}


def resume_prefix(workdir: str, is_chief: bool, task_id: int, num_workers: int) -> str | None:
    """This worker's checkpoint at the latest step that every worker saved (a worker can be
    killed between its save and another's); None when there is none."""
    own = _checkpoint_steps(_checkpoint_dir(workdir, is_chief, task_id))
    common = set(own)
    for other in range(1, num_workers):
        if other != task_id or is_chief:
            common &= set(_checkpoint_steps(_checkpoint_dir(workdir, False, other)))
    if not is_chief:
        common &= set(_checkpoint_steps(_checkpoint_dir(workdir, True, 0)))
    return own[max(common)] if common else None


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(os.path.join(workdir, modeling.CONFIG_JSON), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


# --- Step functions -----------------------------------------------------------------------
class Steps:
    """The compiled replica steps for one model / optimizer / strategy."""

    def __init__(self, model, optimizer, config, strategy):
        self.model, self.optimizer, self.strategy = model, optimizer, strategy
        self.classes = source_classes(config)
        self.variables = list(model.trainable_variables)
        self.l2_mask = optim.l2_decay_mask(config, self.variables)
        self.weight_decay = float(config.optimizer.weight_decay)
        self.clip_norm = float(config.optimizer.clip_norm)
        self.accum = int(config.train.grad_accum_steps)
        self.loss_kind = config.train.loss
        self.smoothing = 0.0 if (config.train.mixup or config.train.cutmix) else float(config.train.label_smoothing)
        self.denominator = float(config.train.global_batch_size * self.accum)
        self.replicas = strategy.num_replicas_in_sync
        self.fp16 = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        with strategy.scope():
            self.augments = make_randaugments(config)
            optimizer.build(self.variables)
            self.accumulators = [
                tf.Variable(
                    tf.zeros(v.shape, v.dtype), trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.SUM,
                )
                for v in self.variables
            ] if self.accum > 1 else []
        grads_fn = self._forward_backward
        if config.train.jit_compile:
            grads_fn = tf.function(grads_fn, jit_compile=True)
        self._grads = grads_fn
        self.train_step = tf.function(self._train_step)
        self.accumulate_step = tf.function(self._accumulate_step)

    def _forward_backward(self, batch):
        with tf.GradientTape() as tape:
            outputs = self.model(tf.cast(batch["frames"], tf.float32), training=True)
            loss_sum, stats = losses.batch_loss_and_stats(
                outputs, batch, self.classes, kind=self.loss_kind, label_smoothing=self.smoothing
            )
            loss = loss_sum / self.denominator
            if self.model.losses:  # regularisers: once per optimizer step over all replicas
                loss += tf.add_n([tf.cast(l, tf.float32) for l in self.model.losses]) / (self.replicas * self.accum)
            scaled = self.optimizer.scale_loss(loss) if self.fp16 else loss
        grads = tape.gradient(scaled, self.variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.variables)]
        return grads, stats

    def _checked(self, batch):
        checks = losses.label_checks(batch, self.classes)
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) for k, v in batch.items()}

    def _apply(self, grads):
        """All-reduced gradient + L2 (SGD) -> global-norm clip -> optimizer update."""
        scale = tf.cast(self.optimizer.dynamic_scale, tf.float32) if self.fp16 else 1.0
        pre_reduce = self.clip_norm > 0 and self.replicas > 1
        if pre_reduce:
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        share = 1.0 if pre_reduce else 1.0 / self.replicas  # each replica's part of the L2 term
        grads = [
            g + tf.cast(self.weight_decay * share * scale, g.dtype) * tf.cast(v, g.dtype) if decay else g
            for g, v, decay in zip(grads, self.variables, self.l2_mask)
        ]
        if self.clip_norm > 0 and (pre_reduce or self.replicas == 1):
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm * scale)
        if pre_reduce:  # the optimizer all-reduces (sums) again
            grads = [g / self.replicas for g in grads]
        self.optimizer.apply_gradients(zip(grads, self.variables))

    def _prepared(self, batch):
        return augment_sources(self._checked(batch), self.augments)

    def _replica_accumulate(self, batch):
        grads, stats = self._grads(self._prepared(batch))
        for acc, g in zip(self.accumulators, grads):
            acc.assign_add(g)
        return stats

    def _replica_train(self, batch):
        grads, stats = self._grads(self._prepared(batch))
        if self.accumulators:
            grads = [g + acc.read_value() for g, acc in zip(grads, self.accumulators)]
            for acc in self.accumulators:
                acc.assign(tf.zeros_like(acc))
        self._apply(grads)
        return stats

    def _reduce(self, stats):
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in stats.items()}

    def _train_step(self, batch):
        return self._reduce(self.strategy.run(self._replica_train, args=(batch,)))

    def _accumulate_step(self, batch):
        return self._reduce(self.strategy.run(self._replica_accumulate, args=(batch,)))


# --- Evaluation -----------------------------------------------------------------------------
def evaluate(
    model: keras.Model,
    datasets: Mapping[str, tf.data.Dataset],
    config: ml_collections.ConfigDict,
    max_steps: int = 0,
) -> dict:
    """Top-1 / top-5 / mean class accuracy per source, the softmax probabilities averaged
    over each video's views (V = eval_num_clips x eval_num_crops consecutive rows).
    Keys "<source>/top1", ..., and "top1", "top5" (means over sources)."""
    names = list(config.data.sources)
    results = {}
    for name, dataset in datasets.items():
        src = config.data.sources[name]
        views = int(src.eval_num_clips * src.eval_num_crops)
        predict = _predictor(model, config, tuple(dataset.element_spec["frames"].shape[1:]))
        all_probs, all_labels = [], []
        for index, batch in enumerate(dataset):
            if max_steps and index >= max_steps:
                break
            logits = losses.source_outputs(predict(batch["frames"]), names)[name]
            probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
            probs = probs.reshape(-1, views, probs.shape[-1]).mean(axis=1)
            all_probs.append(probs)
            all_labels.append(np.asarray(batch["label"]))
        if not all_probs:
            raise ValueError(f"eval data of source {name!r} is empty (config.data.sources.{name}.eval_pattern).")
        probs, labels = np.concatenate(all_probs), np.concatenate(all_labels)
        keep = labels >= 0
        probs, labels = probs[keep], labels[keep]
        ranked = np.argsort(-probs, axis=-1)
        top1 = ranked[:, 0] == labels
        top5 = (ranked[:, :5] == labels[:, None]).any(axis=1)
        per_class = [top1[labels == c].mean() for c in np.unique(labels)]
        results[f"{name}/top1"] = float(top1.mean())
        results[f"{name}/top5"] = float(top5.mean())
        results[f"{name}/mean_class_accuracy"] = float(np.mean(per_class))
        results[f"{name}/num_videos"] = int(len(labels))
    for metric in ("top1", "top5", "mean_class_accuracy"):
        results[metric] = float(np.mean([results[f"{n}/{metric}"] for n in datasets]))
    return results


_PREDICTORS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _predictor(model: keras.Model, config, frame_shape: tuple):
    """model(frames) in inference mode; for eval views of another size (e.g. 256 crops of a
    model trained at 224) a copy of the model built at that size with the same weights.
    One traced function per (model, frame shape), kept across periodic evaluations (a new
    tf.function per call retraced every time); the copy's weights are refreshed per call."""
    cache = _PREDICTORS.setdefault(model, {})
    if frame_shape in cache:
        copy, predict = cache[frame_shape]
        if copy is not None:
            copy.set_weights(model.get_weights())
        return predict
    if tuple(model.inputs[0].shape[1:]) != frame_shape and None not in frame_shape:
        sized = ml_collections.ConfigDict(config.to_dict())
        sized.model.input_shape = frame_shape
        sized.init.keras_weights = ""
        copy = modeling.build_model_from_config(sized)
        copy.set_weights(model.get_weights())
        target = copy
    else:  # a proxy: the cached function must not keep the model (the cache's key) alive
        copy, target = None, weakref.proxy(model)
    predict = tf.function(lambda frames: target(tf.cast(frames, tf.float32), training=False), reduce_retracing=True)
    cache[frame_shape] = (copy, predict)
    return predict


# --- Training -------------------------------------------------------------------------------
def _last_good(manager) -> str:
    return manager.latest_checkpoint or "none yet (no checkpoint was written)"


def _step_record(step, stats, classes, lr, clips, wait, compute, global_batch):
    record = {"step": step, "loss": stats["loss_sum"] / global_batch, "lr": lr}
    for name in classes:
        count = stats[f"count/{name}"]
        if count:
            record[f"train/{name}/accuracy"] = stats[f"correct/{name}"] / count
    total = wait + compute
    record["clips_per_s"] = clips / total if total > 0 else 0.0
    record["input_wait_s"] = wait
    record["compute_s"] = compute
    record["input_wait_fraction"] = wait / total if total > 0 else 0.0
    return record


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    strategy: tf.distribute.Strategy | None = None,
    train_data: DatasetFn | None = None,
    eval_data: Callable[[], Mapping[str, tf.data.Dataset]] | None = None,
) -> TrainResult:
    """Train (or, with train.eval_only, evaluate) as config says, in `workdir`.

    train_data: `fn(tf.distribute.InputContext) -> tf.data.Dataset` of per-replica batches
        ({"frames", "label", "source"[, "soft_label"]}, repeating); default: from
        config.data.sources via tfsts.data (tfsts.training.datasets).
    eval_data: `fn() -> {source_name: dataset}` (one pass each); default from the config
        when any source has an eval_pattern.
    Resumes automatically from the latest checkpoint in workdir.
    """
    config_lib.validate(config)
    set_up_process(config)
    strategy = strategy or make_strategy(config.train.strategy)
    is_chief, task_id = worker_role(strategy)
    num_workers = _num_workers(strategy)
    if train_data is None or (eval_data is None and not config.train.eval_only):
        from tfsts.training import datasets as datasets_lib

        train_data = train_data or datasets_lib.train_dataset_fn(config)
        if eval_data is None and datasets_lib.has_eval_data(config):
            eval_data = lambda: datasets_lib.eval_datasets(config)  # noqa: E731
    if is_chief:
        write_config(config, workdir)
    ckpt_dir = _checkpoint_dir(workdir, is_chief, task_id)
    global_batch = config.train.global_batch_size
    classes = source_classes(config)

    with strategy.scope():
        model = modeling.build_model_from_config(config)
        optimizer = optim.build_optimizer(config, model)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    steps = Steps(model, optimizer, config, strategy)
    state = dict(model=model, optimizer=optimizer, step=step, rng=rng_state_variables(model))
    if steps.augments:  # the RandAugment layers' seed states (absent when off: older checkpoints still fit)
        state["randaugment"] = randaugment_state_variables(steps.augments)
    iterator = iter(strategy.distribute_datasets_from_function(train_data))
    try:  # a single-device iterator is checkpointable; tf.distribute's DistributedIterator is not
        checkpoint = tf.train.Checkpoint(iterator=iterator, **state)
        iterator_in_checkpoint = True
    except ValueError:
        checkpoint = tf.train.Checkpoint(**state)
        iterator_in_checkpoint = False
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=config.train.keep_checkpoints)
    best_manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, step=step), os.path.join(ckpt_dir, "best"), max_to_keep=1
    )

    init_report = None
    prefix = resume_prefix(workdir, is_chief, task_id, num_workers)
    if prefix:
        checkpoint.restore(prefix).assert_existing_objects_matched()
        if is_chief and not config.train.eval_only:
            logs.truncate_log(workdir, int(step.numpy()))
        if not iterator_in_checkpoint:  # replay the input position: skip the batches already used
            iterator = iter(strategy.distribute_datasets_from_function(
                _skipping(train_data, int(step.numpy()) * steps.accum, strategy.num_replicas_in_sync)
            ))
    elif config.init.checkpoint:
        init_report = modeling.initialize_from_checkpoint(model, config)

    run_log = logs.RunLog(workdir, enabled=is_chief)
    history: list = []
    if config.train.eval_only:
        if not eval_data:
            raise config_lib.ConfigError("train.eval_only needs eval data: set data.sources.<name>.eval_pattern.")
        result = evaluate(model, eval_data(), config, config.train.eval_steps)
        record = {"step": int(step.numpy()), **{f"eval/{k}": v for k, v in result.items()}}
        run_log.write(record)
        run_log.close()
        if is_chief:
            with tf.io.gfile.GFile(os.path.join(workdir, "eval.json"), "w") as f:
                json.dump(record, f, indent=2, sort_keys=True)
        return TrainResult(int(step.numpy()), workdir, [record], result, init_report)

    total = config_lib.total_steps(config)
    schedule = optim.schedule_from_config(config)
    stop = min(total, config.train.stop_at_step) if config.train.stop_at_step > 0 else total
    best_value = _read_best(ckpt_dir)
    bar = _progress_bar(config, is_chief, stop, int(step.numpy()))
    window = _Window()
    last_eval = None
    try:
        while int(step.numpy()) < stop:
            wait = compute = 0.0
            stats_sum: dict = {}
            for micro in range(steps.accum):
                t0 = time.perf_counter()
                batch = next(iterator)
                t1 = time.perf_counter()
                fn = steps.train_step if micro == steps.accum - 1 else steps.accumulate_step
                try:
                    stats = {k: float(v) for k, v in fn(batch).items()}
                except tf.errors.InvalidArgumentError as e:
                    raise losses.label_error(e) or e
                t2 = time.perf_counter()
                wait, compute = wait + (t1 - t0), compute + (t2 - t1)
                for k, v in stats.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + v
            step.assign_add(1)
            current = int(step.numpy())
            loss = stats_sum["loss_sum"] / (global_batch * steps.accum)
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss is {loss} at step {current}; last good checkpoint: {_last_good(manager)}. "
                    "Lower config.optimizer.lr or set config.optimizer.clip_norm, then rerun to resume from it."
                )
            window.add(stats_sum, wait, compute, global_batch * steps.accum)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if current % config.train.log_every == 0 or current == stop:
                record = window.record(current, classes, float(schedule(current - 1)))
                run_log.write(record)
                history.append(record)
            if current % config.train.checkpoint_every == 0 or current == stop:
                manager.save(checkpoint_number=current)
            if eval_data and config.train.eval_every and (current % config.train.eval_every == 0 or current == stop):
                last_eval = evaluate(model, eval_data(), config, config.train.eval_steps)
                record = {"step": current, **{f"eval/{k}": v for k, v in last_eval.items()}}
                run_log.write(record)
                history.append(record)
                value = last_eval.get(config.train.best_metric)
                if value is not None and (best_value is None or value > best_value):
                    best_value = value
                    best_manager.save(checkpoint_number=current)
                    _write_best(ckpt_dir, config.train.best_metric, value, current, is_chief)
    except tf.errors.ResourceExhaustedError as e:
        per_replica = global_batch // strategy.num_replicas_in_sync
        raise RuntimeError(
            f"Out of memory at step {int(step.numpy()) + 1} with {per_replica} clips per replica: lower "
            "config.train.global_batch_size (and keep the effective batch with config.train.grad_accum_steps), "
            "or use config.train.precision=mixed_bfloat16 / mixed_float16."
        ) from e
    finally:
        bar.close()
        run_log.close()
    if is_chief:
        logs.plot_learning_curve(logs.read_log(workdir), os.path.join(workdir, logs.CURVE_PNG))
    return TrainResult(int(step.numpy()), workdir, history, last_eval, init_report)


def _skipping(dataset_fn: DatasetFn, steps_done: int, num_replicas: int) -> DatasetFn:
    """dataset_fn whose pipelines start after the batches `steps_done` steps consumed: each
    pipeline feeds num_replicas / num_input_pipelines replicas one batch per step."""

    def skipped(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_pipeline = num_replicas // input_context.num_input_pipelines
        return dataset_fn(input_context).skip(steps_done * per_pipeline)

    return skipped


def _num_workers(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(kind, ())) for kind in ("chief", "worker"))


class _Window:
    """Sums between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.stats, self.wait, self.compute, self.clips, self.steps = {}, 0.0, 0.0, 0, 0

    def add(self, stats, wait, compute, clips):
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0.0) + v
        self.wait, self.compute, self.clips, self.steps = self.wait + wait, self.compute + compute, self.clips + clips, self.steps + 1

    def record(self, step, classes, lr):
        record = _step_record(step, self.stats, classes, lr, self.clips, self.wait, self.compute, self.clips)
        self.reset()
        return record


def _progress_bar(config, is_chief, total, initial):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr,
        disable=not (is_chief and config.train.progress_bar),
    )


def _read_best(ckpt_dir: str):
    path = os.path.join(ckpt_dir, "best", "best.json")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)["value"]


def _write_best(ckpt_dir, metric, value, step, is_chief):
    if not is_chief:
        return
    with tf.io.gfile.GFile(os.path.join(ckpt_dir, "best", "best.json"), "w") as f:
        json.dump({"metric": metric, "value": value, "step": step}, f)
