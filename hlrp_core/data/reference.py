"""The standard public design, for comparison only: an Octo/dlimp-style tf.data pipeline on the same shards.

Per dataset: ``TFRecordDataset`` over the shards (repeat) -> parse the episode (only the camera's encoded frames) ->
all (t, t+k) pairs of the episode as encoded bytes (spe0) -> ``sample_from_datasets`` by weight -> ``shuffle`` of
encoded pairs -> ``decode_jpeg`` + aspect-preserving antialiased bilinear ``resize_with_pad`` (hlrp's filter) ->
``batch`` -> ``prefetch``. One private thread pool of ``threads`` threads, fixed parallelism (no AUTOTUNE growth).
It carries no labels (less work than hlrp's loader, which also assembles metadata).

Run in its own process (``python -m hlrp_core.data.reference SPEC.json``) so its peak RSS is its own; prints JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def run_reference(spec: dict) -> dict:
    from .tfenv import import_tf

    t_import = time.perf_counter()
    tf = import_tf()
    threads, B, size = int(spec["threads"]), int(spec["batch_size"]), int(spec["image_size"])
    dss, weights = [], []
    for d in spec["datasets"]:
        key, k = d["image_feature"], int(d["k"])

        def parse(x, key=key, k=k):
            img = tf.io.parse_single_example(x, {key: tf.io.RaggedFeature(tf.string)})[key]
            n = tf.maximum(tf.shape(img)[0] - k, 0)
            t = tf.range(n)
            return tf.stack([tf.gather(img, t), tf.gather(img, t + k)], axis=1)

        ds = tf.data.TFRecordDataset(d["files"]).repeat().map(parse, num_parallel_calls=1)
        ds = ds.flat_map(tf.data.Dataset.from_tensor_slices)
        dss.append(ds)
        weights.append(float(d["weight"]))
    mix = tf.data.Dataset.sample_from_datasets(dss, weights=weights, seed=0)
    mix = mix.shuffle(int(spec.get("shuffle", 1000)), seed=0)

    def decode(p):
        def one(b):
            im = tf.io.decode_jpeg(b, channels=3)
            return tf.cast(tf.image.resize_with_pad(im, size, size, method="bilinear", antialias=True), tf.uint8)

        return tf.stack([one(p[0]), one(p[1])])

    mix = mix.map(decode, num_parallel_calls=threads, deterministic=True).batch(B).prefetch(2)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = threads
    opts.autotune.enabled = False
    opts.experimental_optimization.map_parallelization = False
    mix = mix.with_options(opts)
    it = iter(mix)
    t0 = time.perf_counter()
    next(it)
    first = time.perf_counter() - t0
    for _ in range(int(spec["warmup"])):
        next(it)
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(int(spec["batches"])):
        next(it)
    dt, cpu = time.perf_counter() - t1, time.process_time() - c1
    return {"reference_pairs_per_s": round(int(spec["batches"]) * B / dt, 2),
            "reference_pairs_per_cpu_s": round(int(spec["batches"]) * B / max(cpu, 1e-9), 2),
            "reference_cpu_utilisation": round(cpu / dt, 3),
            "reference_first_batch_s": round(first, 3),
            "reference_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "reference_import_s": round(t0 - t_import, 2), "reference_threads": threads}


if __name__ == "__main__":
    print(json.dumps(run_reference(json.loads(open(sys.argv[1]).read()))))
