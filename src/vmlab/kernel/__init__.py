"""The model: the Linux 6.18 x86_64 memory manager, one module per kernel file it mirrors."""
