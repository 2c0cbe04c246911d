"""Student models: linear or MLP on embeddings, a small CNN on images."""

from __future__ import annotations

from datapruner.errors import DataprunerError

STUDENT_KINDS = ("linear", "mlp", "cnn")


def make_student(kind: str, input_shape: tuple[int, ...], num_classes: int, width: int = 256):
    """A freshly initialised student (seed torch before calling for a reproducible init).

    `input_shape` is (d,) for embeddings and (channels, height, width) for images.
    """
    if kind == "linear":
        return _linear(input_shape, num_classes)
    if kind == "mlp":
        return _mlp(input_shape, num_classes, width)
    if kind == "cnn":
        return _cnn(input_shape, num_classes, width)
    raise DataprunerError(f"unknown student {kind!r}: choose one of {', '.join(STUDENT_KINDS)}")


def _flat_dim(input_shape: tuple[int, ...]) -> int:
    dim = 1
    for n in input_shape:
        dim *= int(n)
    return dim


def _linear(input_shape, num_classes):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(_flat_dim(input_shape), num_classes))


def _mlp(input_shape, num_classes, width):
    from torch import nn

    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(_flat_dim(input_shape), width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, num_classes),
    )


def _cnn(input_shape, num_classes, width):
    """Two conv blocks (width/8 and width/4 channels), global average pooling, a linear head."""
    from torch import nn

    if len(input_shape) != 3:
        raise DataprunerError(f"the cnn student needs images (channels, height, width), got input shape {input_shape}")
    c1, c2 = max(8, width // 8), max(16, width // 4)
    return nn.Sequential(
        nn.Conv2d(input_shape[0], c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, num_classes),
    )
