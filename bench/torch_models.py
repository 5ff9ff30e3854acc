"""PyTorch twins of dermclass's families, for the speed peers (`bench/peers.py`):
torchvision's MobileNetV2, ShuffleNet v2 and ResNet-50, and, written here because
torchvision lacks them, MobileNetV1, its plain twin ("Conv MobileNet") and ShuffleNet v1.
`python bench/torch_models.py` prints each one's trainable parameters at 7 classes, which
must equal `dermclass summary ARCH`'s. Not part of the product."""

import sys

import torch
import torchvision
from torch import nn

# MobileNetV1's body after its stem: (output channels, stride) per block.
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
    (1024, 2),
    (1024, 1),
]


def conv_bn(c_in, c_out, k, stride, groups=1, relu=True):
    layers = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def mobilenet_v1(classes, plain=False):
    """MobileNetV1 1.0; `plain` replaces each depthwise + pointwise pair by one 3x3 conv."""
    layers, c = [conv_bn(3, 32, 3, 2)], 32
    for out, stride in V1_BLOCKS:
        if plain:
            layers.append(conv_bn(c, out, 3, stride))
        else:
            layers += [conv_bn(c, c, 3, stride, groups=c), conv_bn(c, out, 1, 1)]
        c = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit: grouped 1x1 (ungrouped in the first unit), shuffle, depthwise
    3x3, grouped 1x1; added to the input, or concatenated with its 3x3/2 average pool."""

    def __init__(self, c_in, c_out, stride, groups, first):
        super().__init__()
        mid, self.stride, self.groups = c_out // 4, stride, groups
        out = c_out - c_in if stride == 2 else c_out
        self.compress = conv_bn(c_in, mid, 1, 1, groups=1 if first else groups)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid, relu=False)
        self.expand = conv_bn(mid, out, 1, 1, groups=groups, relu=False)

    def forward(self, x):
        y = self.compress(x)
        n, c, h, w = y.shape
        y = y.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        y = self.expand(self.depthwise(y))
        if self.stride == 2:
            return torch.relu(torch.cat([nn.functional.avg_pool2d(x, 3, 2, 1), y], 1))
        return torch.relu(x + y)


def shufflenet_v1(classes, groups=3):
    stage2 = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}[groups]
    layers, c = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)], 24
    for stage, repeats in enumerate([4, 8, 4]):
        out = stage2 << stage
        for i in range(repeats):
            layers.append(ShuffleUnit(c, out, 2 if i == 0 else 1, groups, stage == 0 and i == 0))
            c = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


def build(arch, classes=7):
    """The PyTorch model for a dermclass architecture name (default widths only)."""
    tv = torchvision.models
    models = {
        "mobilenet_v2:1.0": lambda: tv.mobilenet_v2(weights=None, num_classes=classes),
        "shufflenet_v2:1.0": lambda: tv.shufflenet_v2_x1_0(weights=None, num_classes=classes),
        "resnet50": lambda: tv.resnet50(weights=None, num_classes=classes),
        "mobilenet_v1:1.0": lambda: mobilenet_v1(classes),
        "plain_v1:1.0": lambda: mobilenet_v1(classes, plain=True),
        "shufflenet_v1:g3": lambda: shufflenet_v1(classes, 3),
    }
    if arch not in models:
        raise SystemExit(f"no PyTorch twin of {arch}; known: {', '.join(models)}")
    return models[arch]()


if __name__ == "__main__":
    for arch in sys.argv[1:] or [
        "mobilenet_v1:1.0",
        "plain_v1:1.0",
        "mobilenet_v2:1.0",
        "shufflenet_v1:g3",
        "shufflenet_v2:1.0",
        "resnet50",
    ]:
        model = build(arch)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{arch} {params}")
