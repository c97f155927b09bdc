"""Preloaded first by the sweep's fork server: it ignores Ctrl-C, which the driver handles (stopping the
workers itself), so an interrupt while the server imports lmech prints no traceback from it."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
