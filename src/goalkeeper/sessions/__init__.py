"""Model sessions outside a goal's turns: the shared session loop (session), chat, side questions, plan mode,
drafting a goal and restating it before start. (The PRD loop, which reads the report and sets a goal, lives in
goals/prd.py.)

May import: the adapters (verify, context, tools, models, workspace, sandbox, contract, config), store, spec, core,
events and errors; never goals or a face (import contract).
"""
