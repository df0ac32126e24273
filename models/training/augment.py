"""Moved to `models/synth/augment.py`: this name stays for the tests and scripts that still import it here."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("models.synth.augment")
