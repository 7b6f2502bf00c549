"""The only backend-specific part of the trainer (``official.train``).

``TFBackend``: a custom loop (``strategy.run`` inside ``tf.function``) under any
``tf.distribute`` strategy. Keras ``fit`` is not used because it fails under a two-worker
``MultiWorkerMirroredStrategy`` (keras-team/keras issue 20585). Inputs come from
``data.build_dataset`` (tf.data) with the GLOBAL batch; ``experimental_distribute_dataset``
splits every global batch over the replicas (data auto-sharding, so with several workers
every worker decodes the global batch and keeps its slice: the global batch at step ``n`` is
the same as for a single worker, which is what makes runs comparable and resumable).

``JaxBackend``: a jitted stateless step (``model.stateless_call`` +
``optimizer.stateless_apply``). It needs no TensorFlow for the model and the loss; the input
is ``data.build_dataset`` converted to NumPy when TensorFlow is importable, else an
``npz:FILE`` source (arrays ``x_train, y_train, x_eval, y_eval``, already preprocessed
float32 NHWC images; shuffled by a seeded permutation per epoch) -- ``tf.data`` cannot run
on a machine without TensorFlow. npz input is augmented on the device when
``--device_augment=crop_flip`` (``data.device_augment``: the paper's random-resized crop and
flip, seeded by (data seed, step)); AutoAugment/RandAugment run per image in ``tf.data``, or
with ``--augment_on=device`` batched inside the training step on either backend and on npz
input (``data.device_augment.DeviceAugment``; ``tf.data`` then only decodes, crops and
flips). Online distillation runs the teacher (a Keras model) statelessly in the step on the
same mixed view, as the TensorFlow path does.

Data parallelism on the JAX path (``--distribution_strategy=mirrored``, one process): a
``jax.sharding.Mesh`` over the devices of ``jax_devices`` with one axis ``"data"``; every
global batch is put on it split along the batch axis (``NamedSharding(mesh, P("data"))``),
the weights, BN statistics, optimizer slots, EMA, seed state (and an online teacher) are
replicated (``P()``), and the SAME jitted step runs on these global arrays (outputs pinned
to ``P()``); XLA partitions it and inserts the all-reduces. The step is written for the
global batch, so it is the single-device computation, only partitioned:
* batch norm statistics are computed over the GLOBAL batch, i.e. synchronized BN
  (``--sync_bn`` is implied and recorded in the run config). Per-replica BN (the paper's
  multi-GPU default, the TensorFlow path without ``--sync_bn``) would need ``shard_map``
  and is not available on the JAX path;
* mixup/CutMix (``data.mixing``) pairs and mixes over the global batch (the TensorFlow path
  mixes within each replica's slice), and the random draws (mixing, DropBlock, device crop)
  do not depend on the device count, so N devices match one device up to float summation
  order (tested on 2 host CPU devices).
The global ``--batch_size`` must be divisible by the device count (checked in
``official.train.prepare_config``). ``off`` / ``one_device`` use the default device without
a mesh; evaluation runs on the default device. ``sync_to_variables`` copies the replicated
state to the host (``jax.device_get``) before assigning it, so the checkpoints are the
single-device ones (a run trained on N devices restores on one, and under TensorFlow).

Both backends expose: ``scope()``, ``num_replicas``, ``is_chief``, ``train_batches(start)``,
``eval_batches()``, ``make_train_step(...)`` returning ``step(batch, step_index) -> dict of
floats``, ``evaluate(model) -> (top1, top5, n)`` and ``sync_to_variables()``; the loop in
``official.train`` writes the TensorBoard events for both (``official.summaries``).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Dict

import numpy as np

import keras
from keras import ops

import data
import models
from data import device_augment, mixing  # keras.ops only: no TensorFlow
from official import losses as losses_lib
from official import metrics as metrics_lib


def _per_replica_targets(cfg, images, labels, teacher, seed):
    """Soft targets (label smoothing / mixing) for one replica's batch; ``keras.ops`` only."""
    reg = cfg.regularization
    k = cfg.model.num_classes
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    if reg.mixing == "none":
        targets = losses_lib.smooth_labels(ops.one_hot(labels, k), reg.label_smoothing)
        return images, targets, teacher
    # Teacher *distributions* softmax(t/T) are mixed (paper's code), returned as logits T*log(p).
    return mixing.mix_batch(images, labels, num_classes=k, method=reg.mixing, alpha=reg.mixing_alpha,
                            per_sample=reg.mixing_per_sample, form=reg.mixing_form,
                            label_smoothing=reg.label_smoothing, teacher_logits=teacher, seed=seed,
                            teacher_temperature=(reg.distillation_temperature if teacher is not None else None))


def _device_augmentation(cfg):
    """The augmentation run inside the training step (``data.device_augment.augmentation_for``),
    or None: with ``--augment_on=device`` AutoAugment/RandAugment (+ normalization, + crop/flip
    for npz input with ``--device_augment=crop_flip``); with ``host``, only npz input's
    ``--device_augment=crop_flip`` (JAX path). keras.ops only: no TensorFlow is imported."""
    d = cfg.data
    if d.augment_on != "device" and d.device_augment == "none":
        return None
    return device_augment.augmentation_for(
        augment_on=d.augment_on, device_augment=d.device_augment, autoaugment=d.autoaugment_policy(),
        randaugment=d.randaugment_spec(), normalization=d.normalization,
        npz_input=d.source.startswith("npz:"), seed=int(d.seed or 0),
        posterize_mode=d.augment_posterize, randaugment_levels=d.randaugment_levels)


def loss_terms(cfg, model, images, labels, teacher_logits=None, teacher_model=None, seed=None,
               training=True, decayed=None, call=None, targets=None):
    """Everything the train step computes, as per-example tensors plus scalars.

    Returns a dict: ``logits``, ``targets``, ``teacher_logits`` (after mixing / from the
    online teacher on the same mixed view), ``ce``, ``kd``, ``per_example`` (ce + w*kd) and
    ``l2`` (``sum(w^2)/2`` over the decayed variables, before multiplying by wd).
    """
    if targets is None:
        images, targets, teacher_logits = _per_replica_targets(cfg, images, labels, teacher_logits, seed)
    if teacher_model is not None:
        teacher_logits = ops.stop_gradient(ops.cast(teacher_model(images, training=False), "float32"))
    logits = call(images) if call is not None else model(images, training=training)
    reg = cfg.regularization
    per_example, ce, kd = losses_lib.classification_loss(
        targets, logits, teacher_logits if reg.distillation != "none" else None,
        distillation_weight=reg.distillation_weight, temperature=reg.distillation_temperature)
    l2 = losses_lib.l2_loss(decayed if decayed is not None else losses_lib.decayed_variables(model))
    return dict(logits=logits, targets=targets, teacher_logits=teacher_logits, ce=ce, kd=kd,
                per_example=per_example, l2=l2)


def step_objective(cfg, t, global_batch, num_replicas=1, extra_losses=()):
    """The loss a step minimizes, from :func:`loss_terms` ``t`` (both backends): the per-example
    loss (cross-entropy + distillation) summed and divided by the GLOBAL batch, plus
    ``wd * l2`` (the paper's weight decay in the loss, ``--weight_decay_mode=l2_loss``) and the
    model's own losses. Under ``num_replicas`` replicas this is one replica's share: the
    replicated terms are divided by the replica count, so the all-reduced SUM is the loss."""
    o = cfg.optimization
    wd = o.weight_decay if o.weight_decay_mode == "l2_loss" else 0.0
    loss = ops.sum(t["per_example"]) / global_batch
    if wd:
        loss = loss + wd * t["l2"] / num_replicas
    for extra in extra_losses:
        loss = loss + ops.cast(extra, "float32") / num_replicas
    return loss


def step_metrics(t, loss, global_batch, num_replicas=1):
    """A step's (replica's) metrics as sums (all-reduced with SUM across replicas); train top-1
    is against the dominant class of the (mixed, smoothed) targets. :func:`finish_metrics`
    turns the reduced values into the logged ones."""
    correct = ops.sum(ops.cast(ops.equal(ops.argmax(t["logits"], -1), ops.argmax(t["targets"], -1)),
                               "float32"))
    return dict(loss=loss, ce=ops.sum(t["ce"]) / global_batch, kd=ops.sum(t["kd"]) / global_batch,
                l2=t["l2"] / num_replicas, correct=correct,
                count=ops.cast(ops.shape(t["logits"])[0], "float32"))


def finish_metrics(reduced) -> Dict[str, float]:
    """Host floats: loss, ce, kd, l2, ``samples`` (B: the samples the step trained on; 2B
    images were read with ``double_batch`` mixing) and ``top1``."""
    out = {k: float(v) for k, v in reduced.items()}
    out["samples"] = out.pop("count")
    out["top1"] = out.pop("correct") / max(out["samples"], 1.0)
    return out


def _image_shape(images):
    """``[H, W, C]`` of an evaluation batch (a distributed batch: of its first replica's part)."""
    values = getattr(images, "values", None)  # PerReplica under a multi-replica strategy
    first = values[0] if values else images
    return [int(d) for d in first.shape[1:]]


def _split_labels(labels):
    if isinstance(labels, dict):
        return labels["label"], labels.get("teacher_logits")
    return labels, None


def tf_dataset(cfg, split, training, batch_size, start_batch=0):
    """The ``tf.data`` input of a run (``data.build_dataset`` of ``cfg.input_spec``; both
    backends: the JAX one iterates it as NumPy). GLOBAL batches; data auto-sharding for
    ``tf.distribute``."""
    import tensorflow as tf
    ds = data.build_dataset(cfg.data.source, split, cfg.input_spec(training, batch_size),
                            start_batch=start_batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


# ============================================================================ TensorFlow
class TFBackend:
    name = "tensorflow"

    def __init__(self, cfg):
        import tensorflow as tf
        self.tf = tf
        self.cfg = cfg
        self.strategy = make_strategy(cfg.distribution)
        self.num_replicas = self.strategy.num_replicas_in_sync
        resolver = getattr(self.strategy, "cluster_resolver", None)
        task_type = getattr(resolver, "task_type", None) if resolver else None
        task_id = getattr(resolver, "task_id", None) if resolver else None
        self.is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                                          "chief" not in (resolver.cluster_spec().as_dict() if resolver else {}))
        self.task = f"{task_type}-{task_id}" if task_type else "local"

    def scope(self):
        return self.strategy.scope()

    def train_batches(self, start_batch):
        # cfg.images_per_step(): 2B images per step for double_batch mixing (-> B samples)
        ds = tf_dataset(self.cfg, self.cfg.data.train_split, True, self.cfg.images_per_step(), start_batch)
        return iter(self.strategy.experimental_distribute_dataset(ds))

    def eval_batches(self):
        c = self.cfg
        ds = tf_dataset(c, c.data.eval_split, False, c.data.eval_batch_size or c.optimization.batch_size)
        if c.runtime.eval_steps:
            ds = ds.take(c.runtime.eval_steps)
        return self.strategy.experimental_distribute_dataset(ds)

    # ---- steps ------------------------------------------------------------------------
    def make_train_step(self, model, optimizer, teacher_model=None, ema_vars=None, mix_seed=None):
        tf, cfg, strategy = self.tf, self.cfg, self.strategy
        global_batch = float(cfg.optimization.batch_size)  # samples per step (after mixing)
        n_rep = float(self.num_replicas)
        decayed = losses_lib.decayed_variables(model)
        tvars = model.trainable_variables
        ema_decay = cfg.optimization.ema_decay
        augment = _device_augmentation(cfg)  # --augment_on=device: AutoAugment/RandAugment in the step
        data_seed = int(cfg.data.seed or 0)

        def replica_fn(images, labels, step):
            labels, teacher = _split_labels(labels)
            if augment is not None:  # seeded by (data seed, replica, step): resumable, replicas differ
                replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                seed = tf.stack([data_seed + 65537 * tf.cast(replica, tf.int64), tf.cast(step, tf.int64)])
                images = augment(images, seed)
            with tf.GradientTape() as tape:
                t = loss_terms(cfg, model, images, labels, teacher, teacher_model, mix_seed, decayed=decayed)
                loss = step_objective(cfg, t, global_batch, n_rep, model.losses)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, tvars)
            optimizer.apply(grads, tvars)
            if ema_vars is not None:
                for e, w in zip(ema_vars, tvars):
                    e.assign(ema_decay * e + (1.0 - ema_decay) * tf.cast(w, e.dtype))
            return step_metrics(t, loss, global_batch, n_rep)  # summed over the replicas below

        if cfg.optimization.jit_compile:
            replica_fn_c = tf.function(replica_fn, jit_compile=True, autograph=False)
        else:
            replica_fn_c = replica_fn

        # autograph=False: the step has no Python control flow on tensors (every ``if`` tests a
        # config value), and converting it and the model code cost ~8 s of tracing per run.
        @tf.function(autograph=False)
        def dist_step(iterator, step):
            images, labels = next(iterator)
            out = strategy.run(replica_fn_c, args=(images, labels, step))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        def step_fn(iterator, step):
            return finish_metrics(dist_step(iterator, tf.constant(step, tf.int64)))
        self._loss_terms = loss_terms
        return step_fn

    def evaluate(self, model):
        if getattr(self, "_eval_fn", (None, None))[0] is not model:  # trace once per model
            self._eval_fn = (model, self._make_eval_fn(model))
        ev = self._eval_fn[1]
        tot = np.zeros(3)
        for images, labels in self.eval_batches():
            self.eval_image_shape = _image_shape(images)
            tot += np.array([float(v.numpy()) for v in ev(images, labels)])
        n = max(tot[2], 1.0)
        return tot[0] / n, tot[1] / n, int(tot[2])

    def _make_eval_fn(self, model):
        tf, strategy = self.tf, self.strategy

        @tf.function(autograph=False)
        def ev(images, labels):
            def fn(images, labels):
                labels, _ = _split_labels(labels)
                return tuple(metrics_lib.topk_counts(model(images, training=False), labels))
            out = strategy.run(fn, args=(images, labels))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]
        return ev

    def sync_to_variables(self):
        pass

    def set_drop_block(self, model, keep_prob):
        models.set_drop_block_keep_prob(model, keep_prob)


def make_strategy(dist):
    import tensorflow as tf
    kind = dist.strategy
    if kind == "off":
        return tf.distribute.get_strategy()
    if kind == "one_device":
        dev = "/gpu:0" if dist.num_gpus > 0 and tf.config.list_physical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(dev)
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if dist.num_gpus > 0 and gpus:
            devices = [d.name for d in gpus[:dist.num_gpus]]
        else:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multi_worker_mirrored":
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=dist.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution strategy {kind!r}")


# ============================================================================ JAX
def select_jax_devices(strategy, num_gpus, local_devices, cpu_devices):
    """The devices a JAX run trains on (pure: takes the device lists, so it is testable).

    ``off`` / ``one_device``: the first (default) device. ``mirrored``, chosen as
    ``make_strategy`` does on the TensorFlow path: on an accelerator machine the first
    ``num_gpus`` local devices (``--num_gpus``, default 1: give ``--num_gpus=8`` for 8), with
    ``num_gpus=0`` or on a CPU-only machine all host CPU devices (as TF's mirrored uses all
    logical CPUs; ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes N of them).
    Asking for more accelerators than there are is an error (TF silently takes fewer).
    """
    if strategy != "mirrored":
        return list(local_devices[:1])
    if num_gpus > 0 and local_devices and local_devices[0].platform != "cpu":
        if num_gpus > len(local_devices):
            raise ValueError(f"--num_gpus={num_gpus}: only {len(local_devices)} local "
                             f"{local_devices[0].platform} devices under KERAS_BACKEND=jax")
        return list(local_devices[:num_gpus])
    return list(cpu_devices)


def jax_devices(dist):
    """``select_jax_devices`` for a ``DistributionConfig`` on this machine's local devices."""
    import jax
    local = jax.local_devices()
    cpus = jax.local_devices(backend="cpu") if dist.strategy == "mirrored" else []
    return select_jax_devices(dist.strategy, dist.num_gpus, local, cpus)


class _NpzBatches:
    def __init__(self, path, batch_size, seed, start_batch=0, training=True):
        z = np.load(path)
        key = "train" if training else "eval"
        self.x, self.y = z[f"x_{key}"].astype("float32"), z[f"y_{key}"].astype("int32")
        self.bs, self.seed, self.b, self.training = batch_size, seed, start_batch, training

    def __iter__(self):
        return self

    def __next__(self):
        n = len(self.x)
        if not self.training:
            lo = self.b * self.bs
            if lo >= n:
                raise StopIteration
            self.b += 1
            return self.x[lo:lo + self.bs], self.y[lo:lo + self.bs]
        per_epoch = n // self.bs
        epoch, i = divmod(self.b, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        idx = perm[i * self.bs:(i + 1) * self.bs]
        self.b += 1
        return self.x[idx], self.y[idx]


class JaxBackend:
    name = "jax"

    def __init__(self, cfg):
        import jax
        self.jax = jax
        self.cfg = cfg
        self.devices = jax_devices(cfg.distribution)
        self.num_replicas = len(self.devices)
        self.is_chief = True
        self.task = "local"
        self._state = None
        self.mesh = None  # off / one_device: the default device, no sharding
        if cfg.distribution.strategy == "mirrored":
            from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
            self.mesh = Mesh(np.array(self.devices), ("data",))
            self._batch_sharding = NamedSharding(self.mesh, P("data"))  # split along the batch
            self._replicated = NamedSharding(self.mesh, P())

    def _replicate(self, tree):
        """Model/optimizer/EMA/seed state: a full copy on every device of the mesh."""
        return tree if self.mesh is None else self.jax.device_put(tree, self._replicated)

    def _shard(self, tree):
        """A global batch (images, labels, teacher logits): split along axis 0 over the mesh."""
        return tree if self.mesh is None else self.jax.device_put(tree, self._batch_sharding)

    def scope(self):
        return contextlib.nullcontext()

    def _is_npz(self):
        return self.cfg.data.source.startswith("npz:")

    def train_batches(self, start_batch):
        c = self.cfg
        if self._is_npz():
            return _NpzBatches(c.data.source[4:], c.images_per_step(), c.data.seed or 0, start_batch)
        return tf_dataset(c, c.data.train_split, True, c.images_per_step(),
                          start_batch).as_numpy_iterator()

    def eval_batches(self):
        c = self.cfg
        bs = c.data.eval_batch_size or c.optimization.batch_size
        if self._is_npz():
            it = _NpzBatches(c.data.source[4:], bs, 0, training=False)
        else:
            it = tf_dataset(c, c.data.eval_split, False, bs).as_numpy_iterator()
        if c.runtime.eval_steps:
            it = itertools.islice(it, c.runtime.eval_steps)
        return it

    def make_train_step(self, model, optimizer, teacher_model=None, ema_vars=None, mix_seed=None):
        jax, cfg = self.jax, self.cfg
        if teacher_model is not None and not isinstance(teacher_model, keras.Model):
            raise ValueError("online distillation under the JAX backend needs a Keras teacher (a run "
                             "directory or a .keras file), not a TensorFlow SavedModel")
        global_batch = float(cfg.optimization.batch_size)  # samples per step (after mixing)
        tvars = model.trainable_variables
        decayed_ids = {id(v) for v in losses_lib.decayed_variables(model)}
        decayed_idx = [i for i, v in enumerate(tvars) if id(v) in decayed_ids]
        if not optimizer.built:
            optimizer.build(tvars)
        ema_decay = cfg.optimization.ema_decay
        # npz crop/flip (--device_augment) and/or --augment_on=device (data.device_augment: keras.ops
        # only, and data/__init__ is lazy: no TensorFlow)
        augment = _device_augmentation(cfg)
        data_seed = int(cfg.data.seed or 0)

        def loss_fn(tv, ntv, images, targets, teacher, teacher_state):
            out = {}

            def call(x):
                logits, new_ntv, model_losses = model.stateless_call(tv, ntv, x, training=True,
                                                                     return_losses=True)
                out["ntv"], out["losses"] = new_ntv, model_losses
                return logits
            if teacher_state is not None:  # online KD: the teacher sees the same (mixed) view
                t_logits, _ = teacher_model.stateless_call(teacher_state[0], teacher_state[1], images,
                                                           training=False)
                teacher = ops.stop_gradient(ops.cast(t_logits, "float32"))
            t = loss_terms(cfg, model, images, None, teacher, None, None,
                           decayed=[tv[i] for i in decayed_idx], call=call, targets=targets)
            # one jitted step on the GLOBAL batch (sharded or not): no per-replica shares
            loss = step_objective(cfg, t, global_batch, 1, out["losses"])
            return loss, (out["ntv"], t)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step(tv, ntv, ov, ev, seed_state, images, labels, teacher, aug_seed, teacher_state):
            if augment is not None:  # per-image augmentation on the device, seeded by (data seed, step)
                images = augment(images, aug_seed)
            # images/labels are the GLOBAL batch (sharded over the mesh under mirrored), so mixing
            # pairs samples across the whole batch, and BN (in grad_fn) uses global statistics
            if mix_seed is not None:  # the mixing seed generator, statelessly
                with keras.StatelessScope(state_mapping=[(mix_seed.state, seed_state)]) as scope:
                    images, targets, teacher = _per_replica_targets(cfg, images, labels, teacher, mix_seed)
                    seed_state = scope.get_current_value(mix_seed.state)
            else:
                images, targets, teacher = _per_replica_targets(cfg, images, labels, teacher, None)
            (loss, (ntv, t)), grads = grad_fn(tv, ntv, images, targets, teacher, teacher_state)
            tv, ov = optimizer.stateless_apply(ov, grads, tv)
            if ev is not None:
                ev = [ema_decay * e + (1 - ema_decay) * w for e, w in zip(ev, tv)]
            return tv, ntv, ov, ev, seed_state, step_metrics(t, loss, global_batch)

        if self.mesh is None:
            jstep = jax.jit(step, donate_argnums=(0, 1, 2))
        else:  # the same step on global arrays; every output (state, metrics) stays replicated
            jstep = jax.jit(step, donate_argnums=(0, 1, 2), out_shardings=self._replicated)
        self._model, self._optimizer, self._ema, self._mix_seed = model, optimizer, ema_vars, mix_seed
        self._state = None
        teacher_state = None
        if teacher_model is not None:
            teacher_state = self._replicate(([v.value for v in teacher_model.trainable_variables],
                                             [v.value for v in teacher_model.non_trainable_variables]))

        def step_fn(iterator, step_i):
            if self._state is None:
                self._state = self._replicate((
                    [v.value for v in model.trainable_variables],
                    [v.value for v in model.non_trainable_variables],
                    [v.value for v in optimizer.variables],
                    [v.value for v in ema_vars] if ema_vars is not None else None,
                    mix_seed.state.value if mix_seed is not None else None))
            images, labels = next(iterator)
            labels, teacher = _split_labels(labels)
            images, labels, teacher = self._shard((images, labels, teacher))
            tv, ntv, ov, ev, ss = self._state
            aug_seed = np.asarray([data_seed, step_i], np.uint32)
            tv, ntv, ov, ev, ss, m = jstep(tv, ntv, ov, ev, ss, images, labels, teacher, aug_seed, teacher_state)
            self._state = (tv, ntv, ov, ev, ss)
            return finish_metrics(m)
        return step_fn

    def sync_to_variables(self):
        """Writes the jitted state back into the keras variables (before eval/checkpoint)."""
        if self._state is None:
            return
        state = self._state
        if self.mesh is not None:  # replicated arrays -> host, so the variables (and everything
            state = self.jax.device_get(state)  # read from them: eval, checkpoints) are single-device
        tv, ntv, ov, ev, ss = state
        if ss is not None:
            self._mix_seed.state.assign(ss)
        for v, x in zip(self._model.trainable_variables, tv):
            v.assign(x)
        for v, x in zip(self._model.non_trainable_variables, ntv):
            v.assign(x)
        for v, x in zip(self._optimizer.variables, ov):
            v.assign(x)
        if ev is not None:
            for v, x in zip(self._ema, ev):
                v.assign(x)
        self._state = None  # re-read (e.g. after DropBlock keep-prob changes)

    def set_drop_block(self, model, keep_prob):
        models.set_drop_block_keep_prob(model, keep_prob)
        if self._state is not None:  # patch the keep-prob variables inside the jitted state
            tv, ntv, ov, ev, ss = self._state
            ntv = list(ntv)
            pos = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
            for layer in models.drop_block_layers(model):
                v = layer.keep_prob  # only it: other state (seed generators) lives in the jitted state
                if id(v) in pos:
                    ntv[pos[id(v)]] = self._replicate(v.value)
            self._state = (tv, ntv, ov, ev, ss)

    def evaluate(self, model):
        """Top-1/top-5 on the default device (also after mirrored training: the variables
        hold the host copy that ``sync_to_variables`` wrote)."""
        jax = self.jax
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def counts(tv, ntv, x, labels):
            logits, _ = model.stateless_call(tv, ntv, x, training=False)
            return metrics_lib.topk_counts(logits, labels)
        tot = np.zeros(3)
        for images, labels in self.eval_batches():
            self.eval_image_shape = _image_shape(images)
            labels, _ = _split_labels(labels)
            tot += [float(v) for v in counts(tv, ntv, images, labels)]
        n = max(tot[2], 1.0)
        return tot[0] / n, tot[1] / n, int(tot[2])


def make_backend(cfg):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return TFBackend(cfg)
    if backend == "jax":
        return JaxBackend(cfg)
    raise ValueError(f"the trainer supports the tensorflow and jax backends, not {backend!r}")
