"""Running a goal: the run value every step works on (goal_run); the runner that drives baseline, turns and check
runs as `decide` directs; what comes before the first turn (prepare), and the baseline's checks that `gk exec`
starts before the goal is set (head_start); a goal's sandbox and environment (policy); one turn; one tool call
(calls); one model request (sampling); a check run (checking); auto-compaction; the queued controls (inbox);
webhook notifications; and the engine that runs one goal in this process; temporal/ runs goals as Temporal
workflows, a step each.

May import: the adapters (verify, context, tools, models, workspace, sandbox, contract, config), store, spec, core,
events and errors; never goals or a face (import contract).
"""
