"""Settings shared by every test: no real keyring, no telemetry, offscreen Qt."""

import os

# Tests must never touch the user's real keyring: the "fail" backend means "no keyring",
# so --no-passphrase profiles use the 0600 key file. Tests that need a keyring inject one.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.pop("SCRAMBLED_EGGS_PASSPHRASE", None)
os.environ.pop("SCRAMBLED_EGGS_PROFILE", None)
