"""Test and benchmark harnesses, never imported by the product: a LOCAL deployment launcher
(deployment.py), a fault-injecting TCP proxy (faultproxy.py) and a gvirtus link through it
(faultlink.py)."""
