"""graphc.optim: DeZero's optimizers and hooks, as graph updates fused into the step."""
from .hooks import ClipGrad, FreezeParam, WeightDecay
from .optimizers import SGD, AdaDelta, AdaGrad, Adam, MomentumSGD, Optimizer, Slot

__all__ = ["SGD", "AdaDelta", "AdaGrad", "Adam", "ClipGrad", "FreezeParam", "MomentumSGD",
           "Optimizer", "Slot", "WeightDecay"]
