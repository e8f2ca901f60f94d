"""Builds torchvision's ResNet-18 with weights given by a formula, exports its state_dict to
safetensors, and writes what PyTorch computes on a fixed input to tests/fixtures/resnet18_torch.json.

The Rust test `tests/resnet_parity.rs` regenerates the same weights without torch (the formula
below), saves them as a state_dict would be saved, loads them into trainserve's ResNet-18 and
compares its outputs, training-mode batch norm and gradients with these.

    pip install torch torchvision safetensors
    python scripts/export_resnet_fixture.py [--weights resnet18_formula.safetensors]

Formula: tensors are numbered t = 0, 1, ... in the sorted order of their state_dict names; the
i-th value of a tensor (row-major) is built from a hash in [-1, 1), computed in f64 with the C
library's sin (Python's math.sin, Rust's f64::sin), then rounded to f32:
  s = sin(12.9898 i + 78.233 t + 0.1) * 43758.5453,  v = 2 (s - floor(s)) - 1
  4-d convolution weights    v * sqrt(3 / fan_in)
  fc.weight                  v * sqrt(1 / fan_in)
  *.weight of batch norm     1 + 0.2 v
  *.bias, *.running_mean     0.1 v
  *.running_var              1 + 0.25 (v + 1)
  *.num_batches_tracked      7 (int64)
The input x of shape [2, 3, 64, 64] has x_i = hash(i, 1000); the labels are [0, 1].
"""

import argparse
import json
import math

import torch
import torchvision
from safetensors.torch import save_file

NUM_CLASSES = 10
INPUT_SHAPE = (2, 3, 64, 64)
LABELS = [0, 1]


def hashed(i, t):
    s = math.sin(12.9898 * i + 78.233 * t + 0.1) * 43758.5453
    return 2.0 * (s - math.floor(s)) - 1.0


def formula(name, t, shape):
    n = math.prod(shape)
    v = torch.tensor([hashed(i, t) for i in range(n)], dtype=torch.float64)
    if name.endswith("num_batches_tracked"):
        return torch.tensor(7, dtype=torch.int64)
    if len(shape) == 4:
        values = v * math.sqrt(3.0 / (shape[1] * shape[2] * shape[3]))
    elif name == "fc.weight":
        values = v * math.sqrt(1.0 / shape[1])
    elif name.endswith("running_var"):
        values = 1.0 + 0.25 * (v + 1.0)
    elif name.endswith(".weight"):
        values = 1.0 + 0.2 * v
    else:
        values = 0.1 * v
    return values.to(torch.float32).reshape(shape)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", help="also write the state_dict here as safetensors")
    parser.add_argument("--out", default="tests/fixtures/resnet18_torch.json")
    args = parser.parse_args()

    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    state = model.state_dict()
    filled = {name: formula(name, t, tuple(state[name].shape)) for t, name in enumerate(sorted(state))}
    model.load_state_dict(filled)
    if args.weights:
        # The 3 lines a user needs for any model: state_dict -> contiguous tensors -> file.
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.weights)

    n = math.prod(INPUT_SHAPE)
    x = torch.tensor([hashed(i, 1000) for i in range(n)], dtype=torch.float64).to(torch.float32).reshape(INPUT_SHAPE)

    model.eval()
    with torch.no_grad():
        logits_eval = model(x)

    model.train()
    logits_train = model(x)
    loss = torch.nn.functional.cross_entropy(logits_train, torch.tensor(LABELS))
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    watched = ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
               "layer4.1.bn2.bias", "fc.weight", "fc.bias"]

    fixture = {
        "model": "resnet18",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "num_classes": NUM_CLASSES,
        "input_shape": list(INPUT_SHAPE),
        "labels": LABELS,
        "tensor_count": len(state),
        "tensor_sums": {name: float(t.double().sum()) for name, t in sorted(filled.items())},
        "logits_eval": logits_eval.tolist(),
        "logits_train": logits_train.detach().tolist(),
        "loss_train": loss.item(),
        "grad_norms": {name: float(grads[name].double().norm()) for name in watched},
        "running_after_train": {
            "bn1.running_mean": model.state_dict()["bn1.running_mean"].tolist(),
            "layer4.1.bn2.running_var": model.state_dict()["layer4.1.bn2.running_var"][:16].tolist(),
        },
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: eval logits[0][:3] = {logits_eval[0][:3].tolist()}, loss {float(loss):.6f}")


if __name__ == "__main__":
    main()
