"""The Temporal engine: a workflow per goal whose activities are the runner's effects (DESIGN §3), its worker,
and the client that starts, wakes and queries a goal's workflow.

Only `gk worker`, `gk submit` and the child a face runs to wake a Temporal goal's workflow import this package,
so temporalio loads nowhere else (shapes.py, the values passed between workflow and activities, is plain stdlib).

May import: temporalio, the rest of run, the adapters (models, workspace), store, events and errors; never goals
or a face (import contract).
"""
