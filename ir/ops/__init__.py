"""Every IR op's definition; importing this package fills `ir.registry.REGISTRY`."""
from ir.ops import elementwise, structural  # noqa: F401
