"""One small module per ``comp`` command. Each parses, calls one library function, prints.

Heavy libraries (torch, transformers, lightning, lightgbm, pandas) are imported inside
the command functions, never at module level, so ``comp --help`` answers fast.
"""
