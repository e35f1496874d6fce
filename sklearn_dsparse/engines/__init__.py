"""Where workers run and how their messages move."""

from .base import Engine
from .inprocess import InProcessEngine

__all__ = ["Engine", "InProcessEngine"]
