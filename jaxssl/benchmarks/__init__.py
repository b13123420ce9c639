"""The benchmark tables of ``scripts/benchmark.py``, one module per table.

- :mod:`~jaxssl.benchmarks.workloads`: the benchmarked configs (method x size x input mode)
  and the CPU levers;
- :mod:`~jaxssl.benchmarks.steps`: train-step throughput, FLOPs, MFU and memory per workload,
  side by side with the peers;
- :mod:`~jaxssl.benchmarks.augment`: per-core augmentation throughput vs lightly;
- :mod:`~jaxssl.benchmarks.ntxent`: large-batch NT-Xent time and memory, direct vs blockwise;
- :mod:`~jaxssl.benchmarks.remat`: remat policy x dtype, time and memory;
- :mod:`~jaxssl.benchmarks.peers`: runs the peer step scripts kept beside it
  (``jaxssl/benchmarks/peers/*.py``) in the environments ``scripts/setup_peers.sh`` builds;
- :mod:`~jaxssl.benchmarks.memory` and :mod:`~jaxssl.benchmarks.worker`: the compiled
  program's memory, and running a table in a fresh process.
"""
