"""PyInstaller runtime hook: runs before the app's own code in the frozen executable.

onnxruntime writes a device ID under ~/.cache and reports usage to Microsoft unless
ORT_DISABLE_TELEMETRY=1 is in the environment *before its first import*
(`disable_telemetry_events()` afterwards is too late). The app's entry point sets it too;
setting it here covers any import that could happen earlier, and the user cannot turn it
back on by accident through an inherited environment.
"""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
