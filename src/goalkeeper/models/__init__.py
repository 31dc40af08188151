"""Model providers: the `Model` protocol (base), the scripted test double, the real wire formats (OpenAI Chat,
OpenAI Responses, Anthropic Messages), retries, the factory, prices, context windows and the local llama.cpp server.

May import: the other adapters (verify, context, tools, workspace, sandbox, contract, config, templates),
store, spec, core, events and errors.
"""
