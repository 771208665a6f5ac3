"""bridgemon — readiness monitor for videoconference bridge sites (điểm cầu)."""

__version__ = "0.1.0"
