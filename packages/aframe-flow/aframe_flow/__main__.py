"""``python -m aframe_flow``: print the path of the shipped law.cfg (for ``LAW_CONFIG_FILE``).

``python -m aframe_flow init [DIR]`` writes that configuration as ``DIR/law.cfg`` (default: the
working directory), where ``law`` finds it without ``LAW_CONFIG_FILE``: ``law index`` and
``law run Train`` then work from that directory. An existing ``law.cfg`` is left alone.
"""

import sys
from pathlib import Path

from . import LAW_CONFIG


def main(argv: list[str]) -> int:
    if not argv:
        print(LAW_CONFIG)
        return 0
    if argv[0] != "init" or len(argv) > 2:
        print("usage: python -m aframe_flow [init [DIR]]", file=sys.stderr)
        return 2
    target = Path(argv[1] if len(argv) == 2 else ".") / "law.cfg"
    if target.exists():
        print(f"{target} exists; left as it is", file=sys.stderr)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(Path(LAW_CONFIG).read_text())
    print(f"wrote {target}: run law index / law run from {target.parent.resolve()}")
    return 0


sys.exit(main(sys.argv[1:]))
