"""viton: try-on engines (`geometric`, `vitonhd`) and the long-running try-on service."""
