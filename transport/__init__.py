"""transport: tensor frames and channels (tcp via pyzmq, rdma via pyverbs, chosen by auto).

(Filled in by the transport issue.)
"""
