"""graphc.data: DeZero's Dataset/DataLoader, transforms, and data sets."""
from .dataset import DataLoader, Dataset
from .datasets import MNIST, Digits, FashionMNIST, Spiral, spiral
from .idx import read_idx
from .transforms import AsType, Compose, Flatten, Normalize, ToFloat

__all__ = ["MNIST", "AsType", "Compose", "DataLoader", "Dataset", "Digits", "FashionMNIST",
           "Flatten", "Normalize", "Spiral", "ToFloat", "read_idx", "spiral"]
