"""Generated gRPC code for gvirtus.proto (regenerate with `python -m gvirtus.proto.regen`)."""
