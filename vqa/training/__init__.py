"""The training stage (``make train``): ``setup`` builds a run's model, loaders and optimiser, ``loop`` trains it
until its schedule says stop, keeping the best epoch on val; ``optim``, ``schedule`` and ``stopping`` are the
optimiser, the LR schedule with its stopping rule, and stopping on a signal; ``curves`` draws the log.
"""

from .loop import train

__all__ = ["train"]
