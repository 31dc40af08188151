"""Tools the model can call: the protocol (base), the registry, and each tool (files, patch, search, shell,
read_output, goal, and the MCP servers' tools: mcp, mcp_session), with path checks (paths) and what a tool
says back (replies).

May import: the other adapters (verify, context, models, workspace, sandbox, contract, config, templates),
store, spec, core, events and errors.
"""
