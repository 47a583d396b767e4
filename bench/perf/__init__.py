"""Performance: training and inference throughput, the reference paper's data loop, and PERFORMANCE.md."""
