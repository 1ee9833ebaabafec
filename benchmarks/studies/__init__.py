"""Studies: experiments beside the leaderboard's core, each a library module that ``iov`` commands call.

- ``rank``: does the LoRA rank matter (centralised and federated grids, and their report);
- ``calibration``: runs and fits the fast world's surrogate parameters against real fine-tuning;
- ``curves``: real learning curves at a fixed rank;
- ``bandit``: UCB-DUAL against UCB1 on stochastic bandits;
- ``perf``, ``perf_real``: speed and memory of the fast and the real fidelity;
- ``common``: what several studies share (data folder, ``--set`` overrides, provenance).
"""
