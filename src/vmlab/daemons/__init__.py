"""User-space daemons that run on the model's simulated machine: the early-OOM killers that act before
the kernel's OOM killer (reference oom-killer-6.x.md §2).

A daemon sees a machine only as a user-space program sees one: the text of /proc files, kill(2) and a
clock with timers (the `System` of each daemon). It imports neither vmlab.kernel nor vmlab.host, so the
same code decides on the model machine (vmlab.lab.daemons wires it in) and on a snapshot of the live
one (vmlab.host.proctable), which is how it is held against the real daemon.
"""
