"""What users write and read: scenarios, strace logs, experiments and reports."""
