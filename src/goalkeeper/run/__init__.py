"""Running a goal: the runner that drives baseline, turns and check runs as `decide` directs; one turn; one model
request (sampling); auto-compaction; webhook notifications; and the engine that runs one goal in this process.

May import: the adapters (verify, context, tools, models, workspace, sandbox, contract, config), store, spec, core,
events and errors; never goals or a face (import contract).
"""
