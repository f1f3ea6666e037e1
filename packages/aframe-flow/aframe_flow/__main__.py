"""``python -m aframe_flow``: print the path of the shipped law.cfg (for LAW_CONFIG_FILE)."""

from . import LAW_CONFIG

print(LAW_CONFIG)
