"""The Temporal engine: a workflow per goal whose activities are the runner's effects (DESIGN §3).

Only `gk worker`, `gk submit` and a face waking a Temporal goal import this package: temporalio loads nowhere else.
"""
