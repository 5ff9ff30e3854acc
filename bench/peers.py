#!/usr/bin/env python3
"""Measure the Python peers (PyTorch + torchvision, TF-Keras) the way `dermclass bench` does:
the architecture named by $ARCH (default MobileNetV2 1.0; PyTorch has a twin of every family,
`bench/torch_models.py`, Keras only MobileNetV2), 7 classes, random inputs; training images/s at 224 batch 16 and 128
batch 32 (forward, cross-entropy, backward, Adam step), inference images/s at 224 batch 1
and 16, median over the measured steps after warm-up; peak RSS, and the resident memory right
after the framework was imported (so the peak net of the framework's own libraries compares
like with like: PyTorch from PyPI is a CUDA build). Prints one JSON line per
framework that is installed; says on stderr which were skipped. Not part of the product."""
import json
import os
import resource
import statistics
import sys
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
STEPS = int(os.environ.get("BENCH_STEPS", "5"))
ARCH = os.environ.get("ARCH", "mobilenet_v2:1.0")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    """Resident memory now (Linux), MB; None where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def timed(step, batch, warmup, steps):
    rates = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def torch_report():
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_models import build

    torch.set_num_threads(THREADS)
    framework_rss = current_rss_mb()
    model = build(ARCH)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train(size, batch):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch, 3, size, size)
        y = torch.arange(batch) % 7

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        return timed(step, batch, WARMUP, STEPS)

    def infer(batch, warmup, steps):
        model.eval()
        x = torch.rand(batch, 3, 224, 224)
        with torch.no_grad():
            return timed(lambda: model(x), batch, warmup, steps)

    return report(f"pytorch {torch.__version__}", train, infer, framework_rss)


def keras_report():
    if ARCH != "mobilenet_v2:1.0":
        raise ImportError(f"Keras has no {ARCH} here (MobileNetV2 only)")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    framework_rss = current_rss_mb()

    def train(size, batch):
        model = keras.applications.MobileNetV2(
            weights=None, classes=7, input_shape=(size, size, 3)
        )
        opt = keras.optimizers.Adam(1e-4)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=False)
        x = tf.random.uniform((batch, size, size, 3))
        y = tf.range(batch) % 7

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return timed(lambda: step().numpy(), batch, WARMUP, STEPS)

    model = keras.applications.MobileNetV2(weights=None, classes=7)

    def infer(batch, warmup, steps):
        x = tf.random.uniform((batch, 224, 224, 3))
        fn = tf.function(lambda x: model(x, training=False))
        return timed(lambda: fn(x).numpy(), batch, warmup, steps)

    return report(f"tf-keras {tf.__version__}", train, infer, framework_rss)


def report(framework, train, infer, framework_rss):
    """One framework's JSON line: `train(size, batch)` and `infer(batch, warmup, steps)` at the
    settings of `dermclass bench`, the peak RSS, and the RSS once the framework was loaded."""
    return {
        "framework": framework,
        "train_224_b16": train(224, 16),
        "train_128_b32": train(128, 32),
        "infer_224_b1": infer(1, WARMUP * 2, STEPS * 4),
        "infer_224_b16": infer(16, WARMUP, STEPS),
        "peak_rss_mb": peak_rss_mb(),
        "framework_rss_mb": framework_rss,
    }


def main():
    # Each framework in its own process keeps peak RSS per framework.
    which = sys.argv[1] if len(sys.argv) > 1 else None
    if which is None:
        import subprocess

        for name in ("torch", "keras"):
            subprocess.run([sys.executable, __file__, name], check=False)
        return
    try:
        line = torch_report() if which == "torch" else keras_report()
    except ImportError as err:
        print(f"skipped {which}: {err}", file=sys.stderr)
        return
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
