"""benchmarks: latency harness, regression gate and recorded baselines for HSNet and its baselines."""
