"""The running kernel as the oracle: run workloads for real and read what /proc says.

- `stepper.c`: the tiny static process that runs scenario steps on command (built by `stepper_build`);
- `oracle.HostBackend`: `vmlab.backend.Backend` on the real kernel, driving steppers;
- `procfs`: readers of /proc/<pid>/{maps,smaps,smaps_rollup,status,stat,statm,pagemap};
- `syscall_64`: x86_64 syscall numbers by name.
"""
