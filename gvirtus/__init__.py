"""gvirtus: remote CUDA for torch. Node 1 runs torch work on node 2's device over gRPC.

(Filled in by the gvirtus issue.) Entry point: `python -m gvirtus.backend`.
"""
