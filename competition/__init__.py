"""comp: Kaggle-style competitions. ``from competition import Workspace`` drives one from Python
(:mod:`competition.api`); the ``comp`` command does the same from a shell."""

__all__ = ["Run", "Workspace"]


def __getattr__(name: str):
    if name in __all__:
        # imported on first use: `comp --help` and every command start without loading the stages
        from competition import api

        return getattr(api, name)
    raise AttributeError(f"module 'competition' has no attribute {name!r}")
