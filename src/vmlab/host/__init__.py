"""The running kernel as the oracle: run workloads for real and read what /proc says."""
