"""bridgemon — readiness monitor for videoconference bridge sites (điểm cầu)."""

# Before any other module: decide whether the hot modules load compiled or from source.
from bridgemon import compiled as compiled

__version__ = "0.1.0"
