"""ATFT-GAT-FAN: a cross-sectional stock-ranking model and the library behind its dashboard."""

__version__ = "0.1.0"
