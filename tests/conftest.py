"""Shared test set-up: tracking off, fast CPU settings."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile  # noqa: E402

# comp's machine-wide cache (assembled models, frozen-layer states): a fresh one per test session
os.environ.setdefault("COMP_CACHE", tempfile.mkdtemp(prefix="comp-test-cache-"))
