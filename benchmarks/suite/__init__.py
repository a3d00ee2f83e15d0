"""The parts of `benchmarks/gpu_suite.py`: one module per target, each `run(settings, record)`."""
