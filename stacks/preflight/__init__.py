"""Preflight: read-only checks of the outside world before anything is created.

`make preflight` (and the release pipeline's Preflight step, before the first change
set) runs `python -m stacks.preflight`: inf2 offered in the VPC's zones, the Inf vCPU
quota, the CodeConnections connection, every image and chart of the external-artifact
inventory in its registry, and the weights source. Each failure is one line saying
what to do; the exit code is 1 if any check failed.
"""
