"""Writes a torchvision model with random weights as a state-dict file, an input and the
logits torchvision computes for it, for `train --init`'s equality test
(tests/it/init_torchvision.rs).

Usage: bench/.venv/bin/python bench/torchvision_fixture.py ARCH CLASSES OUT_DIR
ARCH: mobilenet_v2_0.35 | mobilenet_v2_1.0 | shufflenet_v2_0.5 | shufflenet_v2_1.0 | resnet50

OUT_DIR receives model.pth (torch.save of the state dict), input.bin (f32 little-endian,
[1, 3, 64, 64]) and logits.bin (f32, [1, CLASSES]) of the model in eval mode.
"""

import pathlib
import sys

import torch
import torchvision


def build(arch: str, classes: int) -> torch.nn.Module:
    m = torchvision.models
    if arch.startswith("mobilenet_v2_"):
        return m.mobilenet_v2(width_mult=float(arch.rsplit("_", 1)[1]), num_classes=classes)
    if arch.startswith("shufflenet_v2_"):
        width = arch.rsplit("_", 1)[1].replace(".", "_")
        return getattr(m, f"shufflenet_v2_x{width}")(num_classes=classes)
    if arch == "resnet50":
        return m.resnet50(num_classes=classes)
    raise SystemExit(f"unknown arch {arch}")


def scramble_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Batch-norm statistics and affine terms far from their initial values, so that a
    loader which dropped or swapped them would change the logits."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
                mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


def main() -> None:
    arch, classes, out = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(11)
    model = build(arch, classes)
    scramble_norms(model, gen)
    model.eval()
    torch.save(model.state_dict(), out / "model.pth")
    x = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        logits = model(x)
    (out / "input.bin").write_bytes(x.numpy().astype("<f4").tobytes())
    (out / "logits.bin").write_bytes(logits.numpy().astype("<f4").tobytes())
    print(f"{arch}: {sum(p.numel() for p in model.parameters())} parameters -> {out}")


if __name__ == "__main__":
    main()
