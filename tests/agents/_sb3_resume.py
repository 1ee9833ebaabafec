"""The resume check both SB3 trainer tests make: a saved trainer reloads, decides as before and trains on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.sb3 import SB3Trainer


def check_resumes(trainer: SB3Trainer, path: Path, more_steps: int,
                  also: Callable[[SB3Trainer], Any] | None = None) -> None:
    """Save and close ``trainer``, load it from ``path``: same deterministic ranks on random observations, ``also``'s
    checks on the loaded trainer, then ``more_steps`` more steps counted on top of the saved ones."""
    trainer.save(path)
    trainer.close()
    again = SB3Trainer.load(path)
    try:
        if also is not None:
            also(again)
        obs = np.random.default_rng(0).random((4, trainer.vec.observation_space.shape[0]), dtype=np.float32)
        np.testing.assert_array_equal(again.model.predict(obs, deterministic=True)[0],
                                      trainer.model.predict(obs, deterministic=True)[0])
        again.learn(more_steps)
        assert again.num_timesteps >= trainer.num_timesteps + more_steps
    finally:
        again.close()
