"""graphc's benchmark suite: `python -m benchmarks [--quick] [--only NAME] [--json PATH]`.

Five workloads (tiny MLP, MNIST MLP, LeNet, a fused elementwise chain, a VGG block) run on
graphc's backends and, where installed, on PyTorch (eager and torch.compile) and JAX (jit),
all from the same seeded data and initial weights, in float32, with the same thread count.

Layout:
  config.py        command line and repetition settings (no heavy imports)
  threads.py       thread limits: environment before imports, runtime setters, CPU pinning
  workloads.py     workload definitions, seeded data, FLOP/byte counts
  reference.py     float64 NumPy reference results for the correctness check
  peers_graphc.py  peers_torch.py  peers_jax.py   one file per framework
  limits.py        machine limits measured in the same run (sgemm, copy bandwidth)
  compile_probe.py graphc compile time in a fresh process (cold / warm kernel cache)
  harness.py       runs everything, times it, checks it
  report.py        the printed table and the JSON file
  sweep.py         MLP steps over a grid of sizes (`--sweep`); crossover.py: product loops
                   against BLAS per transpose case
  gpu.py           the GPU rows (`python -m benchmarks.gpu [--estimate]`): gpu_peers.py runs
                   graphc cuda, torch and JAX on one GPU, gpu_estimate.py the launch /
                   transfer / compute estimate from a compiled cuda plan

Importing this package imports nothing heavy, so `__main__` can set thread limits first.
"""
