"""Data files of the tool: station catalogue, N-stage rule sets, dataset configs, training presets.

This package holds TOML data, not code; `CONFIG_DIR` lets every stage find the files wherever the package
is installed.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
