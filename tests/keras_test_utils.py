"""Shared helpers for layer / serialization / save-load tests (in the style of keras-hub's
``TestCase.run_layer_test``).

* :func:`run_layer_test` checks one custom layer: build + call + output shape (eager and
  symbolic), ``compute_output_shape``, weight counts, ``get_config`` / ``from_config`` round
  trip (same outputs with the same weights), registration for serialization, ``.keras``
  save / load of a tiny functional model wrapping the layer, and mixed precision policies.
* :func:`check_model_save_load` saves a model as ``.keras``, loads it back and checks that
  weights and outputs are identical; model tests use it directly.
"""
import os
import pathlib
import tempfile

import keras
import numpy as np


def _to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _outputs_to_list(y):
    if isinstance(y, (list, tuple)):
        return [_to_numpy(t) for t in y]
    if isinstance(y, dict):
        return [_to_numpy(y[k]) for k in sorted(y)]
    return [_to_numpy(y)]


def _shape_tuple(shape):
    return tuple(None if d is None else int(d) for d in shape)


def check_model_save_load(model, inputs, tmp_path=None, *, atol=1e-6, rtol=1e-6,
                          filename=None, call_kwargs=None):
    """Saves ``model`` as ``.keras`` under ``tmp_path``, loads it back, checks that every
    weight and the outputs on ``inputs`` (``training=False``) are identical.

    Returns the loaded model.
    """
    call_kwargs = dict(call_kwargs or {})
    call_kwargs.setdefault("training", False)
    with tempfile.TemporaryDirectory() as fallback:
        directory = pathlib.Path(tmp_path if tmp_path is not None else fallback)
        path = directory / (filename or f"{model.name}.keras")
        model.save(os.fspath(path))
        assert path.exists(), f"{path} was not written"
        loaded = keras.saving.load_model(os.fspath(path))

        original_weights = {v.path: _to_numpy(v) for v in model.weights}
        loaded_weights = {v.path: _to_numpy(v) for v in loaded.weights}
        assert sorted(original_weights) == sorted(loaded_weights), (
            "weight paths differ after save/load: "
            f"{sorted(set(original_weights) ^ set(loaded_weights))}")
        for name, value in original_weights.items():
            np.testing.assert_array_equal(loaded_weights[name], value,
                                          err_msg=f"weight {name} differs after save/load")

        expected = _outputs_to_list(model(inputs, **call_kwargs))
        actual = _outputs_to_list(loaded(inputs, **call_kwargs))
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual):
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64),
                                       atol=atol, rtol=rtol,
                                       err_msg="outputs differ after .keras save/load")
    return loaded


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape, *,
                   input_data=None, call_kwargs=None,
                   expected_num_trainable_weights=None,
                   expected_num_non_trainable_weights=None,
                   expected_num_params=None,
                   run_save_load=True, tmp_path=None,
                   mixed_precision_policies=("mixed_bfloat16",),
                   mixed_precision_rtol=5e-2, mixed_precision_atol=5e-2,
                   atol=1e-6, rtol=1e-6, seed=0):
    """Generic checks for one custom layer.

    Args:
      layer_cls: the layer class.
      init_kwargs: constructor arguments.
      input_shape: full input shape including the batch size.
      expected_output_shape: full output shape for ``input_shape`` (a tuple, or a tuple of
        tuples for multi-output layers).
      input_data: optional array of ``input_shape`` (default: uniform [0, 1) numbers).
      call_kwargs: extra call arguments (``training`` defaults to False so random layers
        are deterministic).
      expected_num_*: optional weight / parameter counts.
      run_save_load: check ``.keras`` save / load of a functional model around the layer.
      mixed_precision_policies: global dtype policies under which the layer is also built
        (then run with the float32 layer's weights); its
        outputs must be finite, of the compute dtype, and close (``mixed_precision_rtol/atol``
        relative to the output scale) to float32 outputs with the same weights.

    Returns the float32 layer that was tested.
    """
    call_kwargs = dict(call_kwargs or {})
    call_kwargs.setdefault("training", False)
    rng = np.random.default_rng(seed)
    if input_data is None:
        input_data = rng.uniform(0.0, 1.0, size=input_shape).astype("float32")
    input_data = np.asarray(input_data)
    assert input_data.shape == tuple(input_shape)

    def make():
        return layer_cls(**dict(init_kwargs))

    def call(layer, x):
        return layer(x, **call_kwargs)

    # --- build + eager call + shapes
    layer = make()
    outputs = call(layer, input_data)
    assert layer.built
    out_list = _outputs_to_list(outputs)
    expected_shapes = (list(expected_output_shape)
                       if isinstance(expected_output_shape[0], (tuple, list))
                       else [expected_output_shape])
    assert [o.shape for o in out_list] == [tuple(s) for s in expected_shapes], (
        f"output shapes {[o.shape for o in out_list]} != expected {expected_shapes}")
    for o in out_list:
        assert np.all(np.isfinite(o)), "non-finite outputs"
    if len(expected_shapes) == 1:
        assert _shape_tuple(layer.compute_output_shape(tuple(input_shape))) == \
            tuple(expected_shapes[0])

    # --- symbolic call with unknown batch size
    symbolic_in = keras.Input(shape=tuple(input_shape[1:]), dtype="float32")
    symbolic_out = make()(symbolic_in)
    if len(expected_shapes) == 1:
        assert _shape_tuple(symbolic_out.shape) == (None,) + tuple(expected_shapes[0][1:])

    # --- weight counts
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, \
            [w.path for w in layer.trainable_weights]
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, \
            [w.path for w in layer.non_trainable_weights]
    if expected_num_params is not None:
        assert layer.count_params() == expected_num_params, layer.count_params()

    # --- config round trip: same config, same outputs with the same weights
    config = layer.get_config()
    for key, value in init_kwargs.items():
        if key not in config or isinstance(config[key], dict) or not isinstance(
                value, (bool, int, float, str, tuple, list, type(None))):
            continue  # serialized objects (initializers, ...) are checked by the round trip
        if isinstance(value, (tuple, list)):
            assert tuple(config[key]) == tuple(value), (key, config[key], value)
        else:
            assert config[key] == value, f"get_config()[{key!r}]={config[key]!r} != {value!r}"
    clone = layer_cls.from_config(config)
    call(clone, input_data)
    assert clone.get_config() == config
    assert len(clone.weights) == len(layer.weights)
    clone.set_weights(layer.get_weights())
    for e, a in zip(out_list, _outputs_to_list(call(clone, input_data))):
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol,
                                   err_msg="from_config clone gives different outputs")
    # registered for serialization (package "assemble")
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is layer_cls
    assert keras.saving.get_registered_object(
        keras.saving.get_registered_name(layer_cls)) is layer_cls
    assert keras.saving.get_registered_name(layer_cls).startswith("assemble>")

    # --- .keras save / load of a tiny functional model
    if run_save_load and len(expected_shapes) == 1:
        inp = keras.Input(shape=tuple(input_shape[1:]), batch_size=None, name="inputs")
        model = keras.Model(inp, make()(inp), name=f"wrap_{layer_cls.__name__.lower()}")
        check_model_save_load(model, input_data, tmp_path, atol=atol, rtol=rtol)

    # --- mixed precision
    for policy in mixed_precision_policies:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            mp_layer = make()
            call(mp_layer, input_data)
        finally:
            keras.config.set_dtype_policy(previous)
        mp_layer.set_weights(layer.get_weights())
        mp_out = call(mp_layer, input_data)
        compute_dtype = keras.DTypePolicy(policy).compute_dtype
        assert mp_layer.compute_dtype == compute_dtype
        for v in mp_layer.trainable_weights:
            assert v.dtype == "float32", f"{v.path} has dtype {v.dtype} under {policy}"
        mp_list = mp_out if isinstance(mp_out, (list, tuple)) else [mp_out]
        for t, ref in zip(mp_list, out_list):
            assert keras.backend.standardize_dtype(t.dtype) == compute_dtype, \
                f"output dtype {t.dtype} under {policy}"
            arr = _to_numpy(keras.ops.cast(t, "float32"))
            assert arr.shape == ref.shape
            assert np.all(np.isfinite(arr)), f"non-finite outputs under {policy}"
            scale = max(1.0, float(np.max(np.abs(ref))))
            np.testing.assert_allclose(arr, ref, rtol=mixed_precision_rtol,
                                       atol=mixed_precision_atol * scale,
                                       err_msg=f"{policy} output too far from float32")
    return layer


def calibrate_batch_norm(model, images, epsilon=1e-3):
    """Sets every BatchNormalization's moving statistics to the batch statistics of its input
    on ``images`` (one forward pass in training mode), so that a randomly initialized model
    gives logits of a sane size in inference mode (tests of evaluation and export)."""
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    feats = keras.Model(model.input, [l.input for l in bns])(images, training=True)
    for layer, f in zip(bns, feats):
        f = np.asarray(f)
        axes = tuple(range(f.ndim - 1))
        layer.moving_mean.assign(f.mean(axis=axes))
        layer.moving_variance.assign(f.var(axis=axes) + epsilon)
