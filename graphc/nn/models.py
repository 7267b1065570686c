"""Models built from the layers: DeZero's MLP, a small CNN, and VGG16 (the architecture)."""
from __future__ import annotations

from .. import ops
from .layer import Layer
from .layers import Conv2d, Dropout, Linear, MaxPool2d

RELU_LIKE = ("relu", "leaky_relu")


def init_for(activation) -> str:
    """He initialisation for ReLU nets, Xavier (DeZero's) for anything else."""
    return "he" if getattr(activation, "__name__", "") in RELU_LIKE else "xavier"


def flatten(x):
    """(N, ...) -> (N, prod(...)): the batch stays symbolic."""
    size = 1
    for d in x.shape[1:]:
        size *= d
    return ops.reshape(x, (-1, size))


class MLP(Layer):
    """Fully connected layers of sizes `fc_output_sizes` with `activation` between them (not
    after the last); the input size comes from the data: MLP((100, 10)) on the 8x8 digits is
    a 64-100-10 net."""

    def __init__(self, fc_output_sizes, activation=ops.sigmoid):
        self.activation = activation
        init = init_for(activation)
        self.layers = [Linear(size, init=init) for size in fc_output_sizes]

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


class SimpleCNN(Layer):
    """Two 3x3 convolutions (padding 1) with ReLU, a 2x2 max pool, a hidden fully connected
    layer and the classifier: enough for 8x8 digits or 28x28 MNIST, input (N, C, H, W)."""

    def __init__(self, num_classes: int = 10, channels=(16, 32), hidden: int = 128,
                 dropout: float = 0.0):
        self.conv1 = Conv2d(channels[0], 3, pad=1, init="he")
        self.conv2 = Conv2d(channels[1], 3, pad=1, init="he")
        self.pool = MaxPool2d(2)
        self.fc = Linear(hidden, init="he")
        self.drop = Dropout(dropout)
        self.out = Linear(num_classes)

    def forward(self, x):
        x = ops.relu(self.conv1(x))
        x = self.pool(ops.relu(self.conv2(x)))
        x = self.drop(ops.relu(self.fc(flatten(x))))
        return self.out(x)


class VGG16(Layer):
    """VGG-16 (Simonyan and Zisserman), DeZero's layout: 13 3x3 convolutions in five blocks,
    each block ending in a 2x2 max pool, then 4096-4096-`num_classes` fully connected layers
    with dropout. The architecture only: no pretrained weights are downloaded."""

    BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

    def __init__(self, num_classes: int = 1000):
        for b, block in enumerate(self.BLOCKS, 1):  # conv1_1 ... conv5_3, as DeZero names them
            for i, channels in enumerate(block, 1):
                setattr(self, f"conv{b}_{i}", Conv2d(channels, 3, pad=1, init="he"))
        self.fc6 = Linear(4096, init="he")
        self.fc7 = Linear(4096, init="he")
        self.fc8 = Linear(num_classes)
        self.drop = Dropout(0.5)

    def forward(self, x):
        for b, block in enumerate(self.BLOCKS, 1):
            for i in range(1, len(block) + 1):
                x = ops.relu(getattr(self, f"conv{b}_{i}")(x))
            x = ops.max_pool2d(x, 2, 2)
        x = self.drop(ops.relu(self.fc6(flatten(x))))
        x = self.drop(ops.relu(self.fc7(x)))
        return self.fc8(x)
