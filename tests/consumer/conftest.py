from consumer_rig import anyio_backend, flavour, rig

__all__ = ["anyio_backend", "flavour", "rig"]
