"""graphc.nn: layers and models in DeZero's style, building graph when called.

    model = nn.MLP((100, 10), activation=gc.relu)
    logits = model(x)                      # graph; the weights are Parameters
    with gc.test_mode():
        predict = gc.compile([x], model(x))   # dropout off, BatchNorm's running statistics
"""
from .layer import Layer, Model
from .layers import (
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Deconv2d,
    Dropout,
    Embedding,
    Linear,
    MaxPool2d,
    Sequential,
)
from .mode import is_training, test_mode
from .models import MLP, VGG16, SimpleCNN, flatten

__all__ = [
    "MLP", "VGG16", "AvgPool2d", "BatchNorm", "Conv2d", "Deconv2d", "Dropout", "Embedding",
    "Layer", "Linear", "MaxPool2d", "Model", "Sequential", "SimpleCNN", "flatten",
    "is_training", "test_mode",
]
