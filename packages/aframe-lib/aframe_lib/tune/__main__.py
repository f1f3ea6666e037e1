from ..utils.errors import console_main
from .cli import main

console_main("python -m aframe_lib.tune")(main)()
