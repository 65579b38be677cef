"""What a finished run leaves behind, written atomically: metrics.json, model.pt, model.json.

metrics.json (in the output data dir) holds the last epoch's figures, the number of epochs
and every epoch's row; model.pt is the network's state_dict on the CPU, and model.json says
how to rebuild and feed it (architecture, class, input shape, normalisation, hyperparameters).
Every file is written to a temporary name and renamed, so a reader never sees half a file;
checkpoints use the same save_atomic. torch arrives as an argument (imported by the caller).
"""

from __future__ import annotations

import json
import os

from report import log

METRIC_KEYS = ("train_loss", "test_loss", "test_accuracy", "epoch_seconds", "samples_per_second")


def save_atomic(obj, path, torch):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(obj, path):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def write_outputs(p, net, history, run_args, torch):
    """metrics.json to p["output_data"], model.pt and model.json to p["model"]."""
    from mnist_data import MNIST_MEAN, MNIST_STD
    from model import ARCHITECTURE, INPUT_SHAPE, NUM_CLASSES

    final = {k: history[-1][k] for k in METRIC_KEYS} if history else {}
    metrics = {**final, "epochs": len(history), "history": history}
    write_json_atomic(metrics, os.path.join(p["output_data"], "metrics.json"))

    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_atomic(state, os.path.join(p["model"], "model.pt"), torch)
    write_json_atomic(
        {
            "architecture": ARCHITECTURE,
            "class": "model.Net",
            "state_dict": "model.pt",
            "input_shape": list(INPUT_SHAPE),
            "num_classes": NUM_CLASSES,
            "normalization": {"mean": [MNIST_MEAN], "std": [MNIST_STD]},
            "output": "log_softmax",
            "torch_version": torch.__version__,
            "epochs": len(history),
            "metrics": final,
            "hyperparameters": {k: v for k, v in run_args.items() if k != "epochs"},
        },
        os.path.join(p["model"], "model.json"),
    )
    log(f"wrote {p['model']}/model.pt, model.json and {p['output_data']}/metrics.json")
