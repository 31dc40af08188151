"""Tools the model can call: the protocol, the registry and each tool."""
