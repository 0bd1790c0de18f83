"""secbench: a benchmark for the security and robustness of deep vision models.

Importing this package stays cheap (no torch); the heavy modules load on demand.
"""

__version__ = "0.1.0"
