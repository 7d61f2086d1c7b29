"""node2: the gateway (receives tensors over RDMA/TCP, hands them to VITON) and health."""
