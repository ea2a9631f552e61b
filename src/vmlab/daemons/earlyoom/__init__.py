"""earlyoom (github.com/rfjakob/earlyoom), its C files mirrored: `msg` (messages, the TERM,KILL
tuples), `meminfo` (/proc/meminfo), `main` (options, lowmem_sig, sleep_time_ms), `kill` (is_larger,
find_largest_process, the kill lines) and `daemon` (the poll loop and kill_wait on a simulated clock).

Two releases are modelled, as `Flavor`s: v1.9.0 (master; the default) and v1.7 (Debian bookworm's
package, which the differential tests run). Where they differ is listed in `flavor.py`.
"""
