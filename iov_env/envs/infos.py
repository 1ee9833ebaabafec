"""Per-agent infos as read-only dicts, each built on first access from one round's shared columns.

``step()`` used to build N dicts of 23 keys in Python every round, read or not: 26% of a step at N=100
and most of it at N=10,000. Now a round's columns (its ``RoundMetrics`` arrays, the next decision's
masks) are held once by a ``_RoundInfos`` and each agent gets a ``_LazyInfo``: a ``dict`` subclass that
holds only (round, index) until something reads it. The first read fills it with exactly the values the
eager code gave (the same keys in the same order, the same Python types: ``tolist()`` scalars, the task
and fault names, a read-only ``int8`` mask row, a read-only ``rewards`` dict) and turns it into a plain
``ReadOnlyDict``, whose reads are dict's own C methods from then on.

Why a ``dict`` subclass rather than a ``Mapping``: PettingZoo's ``api_test`` requires each agent's info to
be a ``dict``, SuperSuit and RLlib merge them with ``{**info}``, and ``gymnasium``'s ``data_equivalence``
compares them as dicts. Why read-only: the same object is handed to every consumer of the step (the
AEC view's ``last()`` and ``infos``, the runner, the agents); a change by one would be seen by the
others. ``dict(info)`` gives a mutable copy.

A lazy info overrides every read that could otherwise see its still-empty storage (item, ``get``,
``in``, ``len``, iteration, ``keys``/``values``/``items``, ``==``, ``repr``, ``copy``, ``|``, pickling);
``dict(info)``, ``{**info}`` and ``f(**info)`` take CPython's generic path for a dict subclass that
overrides ``__iter__`` and so call ``keys()`` first. Pickling, ``copy`` and ``deepcopy`` give a filled
``ReadOnlyDict`` equal to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import numpy as np
from pettingzoo.utils.wrappers import BaseParallelWrapper

from iov_env.sim.faults import FAULT_NAMES
from iov_env.sim.simulator import RoundMetrics

__all__ = ["ReadOnlyDict", "WritableInfos", "read_only", "reset_infos", "step_infos"]


class ReadOnlyDict(dict):
    """A ``dict`` that refuses every change (``TypeError``); ``dict(d)`` is a mutable copy.

    The env's per-agent infos, their ``"rewards"`` entry and dict observations are of this type.
    Pickles, copies and compares as the dict it holds.
    """

    # the lazy subclass's state: declared here so that a filled one can become a ReadOnlyDict (same layout)
    __slots__ = ("_source", "_index")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if dict.__len__(self):  # __init__ called again on a filled dict would merge into it
            self._refuse()
        dict.__init__(self, *args, **kwargs)

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only: this is the env's own per-agent data, shared with every "
                        "reader of the step; allowed: read it, or change a copy made with dict(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        # rebuilt through __init__ from a plain copy: dict's default pickling would refill it item by item
        return ReadOnlyDict, (dict(self),)


class _RoundInfos:
    """One round's columns, shared by its N lazy infos; turned into Python lists on the first read."""

    __slots__ = ("_masks", "_tasks", "_arrays", "_round_index", "_columns")

    def __init__(self, masks: np.ndarray, tasks: Sequence[str], arrays: tuple[np.ndarray, ...],
                 round_index: int | None) -> None:
        self._masks = masks
        self._tasks = tasks
        self._arrays = arrays  # reset: RESET_COLUMNS; step: STEP_COLUMNS, in that order
        self._round_index = round_index  # None after reset
        self._columns: tuple[list[Any], ...] | None = None

    def _lists(self) -> tuple[list[Any], ...]:
        # one tolist() per column for all N agents: Python scalars, as the eager code gave
        if self._columns is None:
            self._columns = tuple(a.tolist() for a in self._arrays)
        return self._columns

    def info(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s info, with the keys, order and types of the eager code."""
        if self._round_index is None:
            task_of, active, budget, price = self._lists()
            t = task_of[i]
            return {"active": active[i], "action_mask": self._masks[i], "task": self._tasks[t], "task_index": t,
                    "round": 0, "budget": budget[i], "dual_price": price[t]}
        (task_of, active, rank, corr, acc, lat, en, bud, r_acc, r_lat, r_en, fault, rsu, t_used, t_budget, price,
         saved, reward, t_acc, t_lat) = self._lists()
        t = task_of[i]
        return {
            "active": active[i],
            "action_mask": self._masks[i],
            "action_corrected": corr[i],
            "rank": rank[i],
            "cost": en[i],
            "budget": bud[i],
            "reward": reward[i],
            "rewards": ReadOnlyDict(accuracy=r_acc[i], latency=r_lat[i], energy=r_en[i]),
            "accuracy": acc[i],
            "latency_s": lat[i],
            "energy_j": en[i],
            "task": self._tasks[t],
            "task_index": t,
            "rsu": rsu[i],
            "dual_price": price[t],
            "task_energy_used_j": t_used[t],
            "task_budget_j": t_budget[t],
            "task_accuracy": t_acc[t],
            "task_latency_s": t_lat[t],
            "fault": FAULT_NAMES[fault[i]],
            "fault_energy_saved_j": saved[i],
            "round": self._round_index,
        }


class _LazyInfo(ReadOnlyDict):
    """Agent ``index``'s info of one round, filled on its first read (then it is a ``ReadOnlyDict``)."""

    __slots__ = ()

    def __init__(self, round_infos: _RoundInfos, index: int, active: bool) -> None:
        """Agent ``index`` of ``round_infos``; ``active`` is its first key's value, held from the start."""
        if dict.__len__(self):  # called again on a live info
            self._refuse()
        # C code may ask a dict's storage whether it is empty without calling any method (json's encoder
        # does, then calls items()): with its first key in place an unread info never looks empty
        dict.__setitem__(self, "active", active)
        self._source = round_infos
        self._index = index

    def _fill(self) -> None:
        source = self._source
        if source is None:  # filled by another thread between its read and ours
            return
        dict.update(self, source.info(self._index))
        self.__class__ = ReadOnlyDict  # from now on reads are dict's own
        self._source = None

    # every read fills first; after that the object is a ReadOnlyDict and none of these run again
    def __getitem__(self, key: Any) -> Any:
        self._fill()
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:  # noqa: D102 - dict's
        self._fill()
        return dict.get(self, key, default)

    def __contains__(self, key: Any) -> bool:
        self._fill()
        return dict.__contains__(self, key)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)

    def __iter__(self) -> Iterator[Any]:
        self._fill()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[Any]:
        self._fill()
        return dict.__reversed__(self)

    def keys(self) -> Any:  # noqa: D102 - dict's
        self._fill()
        return dict.keys(self)

    def values(self) -> Any:  # noqa: D102 - dict's
        self._fill()
        return dict.values(self)

    def items(self) -> Any:  # noqa: D102 - dict's
        self._fill()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:  # noqa: D102 - dict's: a plain, mutable dict
        self._fill()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._fill()
        if isinstance(other, _LazyInfo):
            other._fill()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment] - defining __eq__ would otherwise leave dict's (None) implicit

    def __or__(self, other: Any) -> Any:
        self._fill()
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self._fill()
        return dict.__ror__(self, other)

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        self._fill()
        return ReadOnlyDict, (dict(dict.items(self)),)


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` itself, marked read-only (rows and slices taken from it are read-only too)."""
    array.flags.writeable = False
    return array


def _lazy(agents: Sequence[str], source: _RoundInfos, active: np.ndarray) -> dict[str, dict[str, Any]]:
    n = len(agents)
    return dict(zip(agents, map(_LazyInfo, [source] * n, range(n), active.tolist()), strict=True))


def reset_infos(agents: Sequence[str], masks: np.ndarray, tasks: Sequence[str], vehicle_task: np.ndarray,
                active: np.ndarray, budget_j: np.ndarray, dual_price: np.ndarray) -> dict[str, dict[str, Any]]:
    """The infos ``reset()`` returns: agent -> lazy read-only dict. The arrays are read on first access, so the
    caller passes ones that nothing changes in place later (the simulator replaces its arrays, it does not
    overwrite them)."""
    return _lazy(agents, _RoundInfos(masks, tasks, (vehicle_task, active, budget_j, dual_price), None), active)


def step_infos(agents: Sequence[str], masks: np.ndarray, tasks: Sequence[str], vehicle_task: np.ndarray,
               m: RoundMetrics) -> dict[str, dict[str, Any]]:
    """The infos ``step()`` returns for the round ``m`` describes (same rule on the arrays as ``reset_infos``)."""
    terms = m.reward_terms
    arrays = (vehicle_task, m.active, m.rank, m.action_corrected, m.accuracy, m.latency_s, m.energy_j, m.budget_j,
              terms["accuracy"], terms["latency"], terms["energy"], m.fault, m.vehicle_rsu, m.task_energy_j,
              m.task_budget_j, m.dual_price, m.fault_energy_saved_j, m.reward, m.task_accuracy, m.task_latency_s)
    return _lazy(agents, _RoundInfos(masks, tasks, arrays, m.round_index), m.active)


class WritableInfos(BaseParallelWrapper):
    """A parallel env whose ``reset``/``step`` hand out each agent's info as a plain, mutable ``dict`` copy.

    For tools that write into the infos they are given: SuperSuit's ``pettingzoo_env_to_vec_env_v1`` stores
    ``terminal_observation`` in the last step's infos. It costs what the eager infos cost (every info is
    filled and copied), so use it only in front of such a tool.
    """

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """The wrapped env's ``reset``, infos copied into plain dicts."""
        obs, infos = self.env.reset(seed=seed, options=options)
        return obs, {a: dict(i) for a, i in infos.items()}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """The wrapped env's ``step``, infos copied into plain dicts."""
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return obs, rewards, terms, truncs, {a: dict(i) for a, i in infos.items()}
