"""The one way to import TensorFlow in hlrp: quiet, CPU-only (TF must not reserve the GPU torch needs), lazily."""

from __future__ import annotations

import os


def import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised: devices can no longer change; TF-CPU has none anyway
        pass
    return tf


def import_tfds():
    import_tf()
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    return tfds
