"""graphc's hand-written numba.cuda kernels (nn.py, conv.py, gemm.py, rng.py) with their
bindings (bindings.py), the launch sizes (launch.py) and the scalar helpers the generated
kernels call (mathlib.py). Importing this package imports numba.cuda: a process decides
between a GPU and the simulator (NUMBA_ENABLE_CUDASIM=1) before it gets here."""
