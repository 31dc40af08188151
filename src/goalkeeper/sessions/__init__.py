"""Model sessions outside a goal's turns: the shared session loop (session), chat, side questions, plan mode,
drafting a goal, restating it before start, and the PRD loop.

May import: the adapters (verify, context, tools, models, workspace, sandbox, contract, config), store, spec, core,
events and errors; never goals or a face (import contract).
"""
