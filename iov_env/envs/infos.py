"""Per-agent infos as read-only dicts, built when first read from one round's shared columns.

``step()`` used to build N dicts of 22 keys in Python every round, read or not: 26% of a step at N=100
and, with the garbage collector's passes over them, most of it at N=10,000. Now a round's columns (its
``RoundMetrics`` arrays, the next decision's masks) are held once by a ``_RoundInfos``, and ``step()``
returns an ``AgentDict`` (agent -> info) that builds every agent's info on its own first read, in one loop
over columns converted once for all agents. A caller that never reads the infos pays for none; one that
reads them pays about what the eager dicts cost (a little more: a dict subclass is allocated without the
plain dict's free list). Each info holds exactly what the eager code gave: the same keys in the same order,
the same Python types (``tolist()`` scalars, the task and fault names, a read-only ``int8`` mask row, a
read-only ``rewards`` dict). The ``AgentDict`` stays mutable, as the plain dict it replaces was; the infos
in it are ``ReadOnlyDict``.

Why ``dict`` subclasses rather than ``Mapping``: PettingZoo's ``api_test`` requires each agent's info to be
a ``dict`` (and ``parallel_api_test`` the infos), SuperSuit and RLlib merge them with ``{**info}``, and
``gymnasium``'s ``data_equivalence`` compares them as dicts. Why read-only: the same info object is handed
to every consumer of the step (the AEC view's ``last()`` and ``infos``, the runner, the agents); a change by
one would be seen by the others. ``dict(info)`` gives a mutable copy; ``WritableInfos`` gives every
consumer behind it mutable copies, for tools that write into infos (SuperSuit).

Before its first read the lazy ``AgentDict``'s own storage holds only its first agent, whose info is a
placeholder (``_LazyInfo``) holding its first key: that keeps C code which only asks whether a dict is
empty, as json's encoder does before calling ``items()``, from taking either for an empty one. Every Python-level read and write is overridden to fill it first: item, ``get``, ``in``,
``len``, iteration, ``keys``/``values``/``items``, ``==``, ``repr``, ``copy``, ``|``, pickling, and
``dict(d)``, ``{**d}`` and ``f(**d)``, which for a dict subclass that overrides ``__iter__`` take
CPython's generic path through ``keys()``. Only C code that reads a dict subclass's storage directly
without calling any of its methods (``PyDict_Next``: orjson, msgpack outside strict mode) would see the
unread dict partly filled; read it once, or pass ``dict(d)``. Pickling, ``copy`` and ``deepcopy`` give
filled dicts equal to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from typing import Any, NoReturn

import numpy as np
from pettingzoo.utils.wrappers import BaseParallelWrapper

from iov_env.sim.faults import FAULT_NAMES
from iov_env.sim.simulator import RoundMetrics

__all__ = ["AgentDict", "ReadOnlyDict", "WritableInfos", "read_only", "reset_infos", "step_infos"]


class ReadOnlyDict(dict):
    """A ``dict`` that refuses every change through its methods (``TypeError``); ``dict(d)`` is a mutable copy.

    The env's per-agent infos, their ``"rewards"`` entry and dict observations are of this type.
    Pickles, copies and compares as the dict it holds. (dict's own unbound methods, such as
    ``dict.__setitem__(d, k, v)`` or ``d.__init__(...)``, still write into it: Python has no way to forbid
    them on a ``dict`` subclass, and a Python ``__init__`` guarding the latter would slow every info down.)
    """

    # the lazy subclass's state: declared here so that a filled one can become a ReadOnlyDict (same layout)
    __slots__ = ("_source", "_index")

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only: this is the env's own per-agent data, shared with every "
                        "reader of the step; allowed: read it, or change a copy made with dict(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        # rebuilt in one call from a plain copy: dict's default pickling would refill it item by item
        return ReadOnlyDict, (dict(self),)


# fault code -> name as one array, to gather every agent's at once (codes are small non-negative ints)
_FAULT_NAMES = np.array([FAULT_NAMES.get(code) for code in range(max(FAULT_NAMES) + 1)], dtype=object)


class _RoundInfos:
    """One round's columns, shared by its N infos; every agent's info is built, once, when the first is read."""

    __slots__ = ("_masks", "_tasks", "_vehicle_task", "_metrics", "_reset", "_built")

    def __init__(self, masks: np.ndarray, tasks: Sequence[str], vehicle_task: np.ndarray,
                 metrics: RoundMetrics | None = None, reset: tuple[np.ndarray, ...] = ()) -> None:
        self._masks = masks
        self._tasks = tasks
        self._vehicle_task = vehicle_task
        self._metrics = metrics  # the round just run, or None after reset
        self._reset = reset  # after reset: (active, budget_j, dual_price)
        self._built: list[ReadOnlyDict] | None = None

    def active(self, i: int) -> bool:
        """Agent ``i``'s ``"active"`` (the first key of every info), without building any info."""
        return (self._reset[0] if self._metrics is None else self._metrics.active)[i].item()

    def infos(self) -> list[ReadOnlyDict]:
        """Every agent's info, in agent order, with the keys, order and types of the eager code it replaces.

        Each column is converted once for all agents (``tolist()``: Python scalars; per-task values gathered
        per agent first), so the loop below only packs values into dicts.
        """
        if self._built is not None:
            return self._built
        vt, ro = self._vehicle_task, ReadOnlyDict
        task_of, names, masks = vt.tolist(), np.array(self._tasks, dtype=object)[vt].tolist(), list(self._masks)
        m = self._metrics
        if m is None:  # after reset: nothing executed yet
            active, budget, price = self._reset
            self._built = [
                ro({"active": a, "action_mask": k, "task": n, "task_index": t, "round": 0, "budget": b, "dual_price": p})
                for a, k, n, t, b, p in zip(active.tolist(), masks, names, task_of, budget.tolist(), price[vt].tolist(),
                                            strict=True)
            ]
            return self._built
        terms, r = m.reward_terms, m.round_index
        columns = (
            m.active.tolist(), masks, m.action_corrected.tolist(), m.rank.tolist(), m.energy_j.tolist(),
            m.budget_j.tolist(), m.reward.tolist(), terms["accuracy"].tolist(), terms["latency"].tolist(),
            terms["energy"].tolist(), m.accuracy.tolist(), m.latency_s.tolist(), names, task_of,
            m.vehicle_rsu.tolist(), m.dual_price[vt].tolist(), m.task_energy_j[vt].tolist(),
            m.task_budget_j[vt].tolist(), m.task_accuracy[vt].tolist(), m.task_latency_s[vt].tolist(),
            _FAULT_NAMES[m.fault].tolist(), m.fault_energy_saved_j.tolist(),
        )
        self._built = [
            ro({"active": a, "action_mask": k, "action_corrected": c, "rank": rk, "cost": e, "budget": b, "reward": rw,
                "rewards": ro({"accuracy": ra, "latency": rl, "energy": re}), "accuracy": ac, "latency_s": la,
                "energy_j": e, "task": n, "task_index": t, "rsu": rsu, "dual_price": p, "task_energy_used_j": tu,
                "task_budget_j": tb, "task_accuracy": ta, "task_latency_s": tl, "fault": f,
                "fault_energy_saved_j": sv, "round": r})
            for a, k, c, rk, e, b, rw, ra, rl, re, ac, la, n, t, rsu, p, tu, tb, ta, tl, f, sv in zip(*columns, strict=True)
        ]
        return self._built


def _after_fill(name: str) -> Any:
    """A dict method that fills a lazy dict first (any lazy argument too), then runs the filled class's own."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._fill()
        for arg in args:  # == and | against another lazy dict read its storage directly
            if isinstance(arg, _FillOnRead):
                arg._fill()
        return getattr(self, name)(*args, **kwargs)  # the filled class: dict's C method, or a refusal

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(dict, name).__doc__
    return method


class _FillOnRead:
    """Mixin for a lazy dict subclass: every dict method fills it first and switches it to its filled class.

    Each method runs once per object at most: ``_fill`` assigns the filled class, whose methods are dict's.
    """

    __slots__ = ()

    def _fill(self) -> None:
        raise NotImplementedError

    __getitem__ = _after_fill("__getitem__")
    __contains__ = _after_fill("__contains__")
    __len__ = _after_fill("__len__")
    __iter__ = _after_fill("__iter__")
    __reversed__ = _after_fill("__reversed__")
    __eq__ = _after_fill("__eq__")
    __ne__ = _after_fill("__ne__")
    __or__ = _after_fill("__or__")
    __ror__ = _after_fill("__ror__")
    __repr__ = _after_fill("__repr__")
    __reduce__ = _after_fill("__reduce__")
    __reduce_ex__ = _after_fill("__reduce_ex__")
    get = _after_fill("get")
    keys = _after_fill("keys")
    values = _after_fill("values")
    items = _after_fill("items")
    copy = _after_fill("copy")
    # writes too: the outer dict then takes them, a per-agent info (a ReadOnlyDict once filled) refuses them
    __setitem__ = _after_fill("__setitem__")
    __delitem__ = _after_fill("__delitem__")
    __ior__ = _after_fill("__ior__")
    clear = _after_fill("clear")
    pop = _after_fill("pop")
    popitem = _after_fill("popitem")
    setdefault = _after_fill("setdefault")
    update = _after_fill("update")
    __hash__ = None  # type: ignore[assignment] - unhashable, as dict


class _LazyInfo(_FillOnRead, ReadOnlyDict):
    """The first agent's info, held by an unread infos dict: filled with the others, or on its own first read
    (then it is a ``ReadOnlyDict``)."""

    __slots__ = ()

    def __init__(self, round_infos: _RoundInfos, index: int, active: bool) -> None:
        """Agent ``index`` of ``round_infos``; ``active`` is its first key's value, held from the start."""
        dict.__setitem__(self, "active", active)
        self._source = round_infos
        self._index = index

    def _fill(self) -> None:
        source = self._source
        if source is None:  # filled by another thread between its read and ours
            return
        dict.update(self, source.infos()[self._index])
        self.__class__ = ReadOnlyDict
        self._source = None


class AgentDict(dict):
    """The infos of one ``reset()`` or ``step()``: agent -> per-agent info; a mutable ``dict`` like the one it replaces."""

    # the lazy subclass's state, declared here so that a filled one can become an AgentDict (same layout)
    __slots__ = ("_source", "_agents")

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:
        return dict, (dict(self),)  # a plain dict of the infos: nothing to rebuild lazily on the other side


class _LazyAgentDict(_FillOnRead, AgentDict):
    """``AgentDict`` that creates its per-agent infos on its first read (then it is an ``AgentDict``)."""

    __slots__ = ()

    def __init__(self, agents: Sequence[str], source: _RoundInfos) -> None:
        """The infos of ``agents`` (a list nothing changes in place) over ``source``; holds the first one already."""
        if dict.__len__(self):
            raise TypeError("a lazy AgentDict is initialised once, by the env")
        if agents:
            dict.__setitem__(self, agents[0], _LazyInfo(source, 0, source.active(0)))
        self._source = source
        self._agents = agents

    def _fill(self) -> None:
        source = self._source
        if source is None:
            return
        agents, infos = self._agents, source.infos()
        first = dict.get(self, agents[0]) if agents else None
        if type(first) is _LazyInfo:  # held already: it takes its values (unless something read it past us)
            first._fill()
        dict.update(self, zip(islice(agents, 1, None), islice(infos, 1, None), strict=True))
        self.__class__ = AgentDict
        self._source = self._agents = None


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` itself, marked read-only (rows and slices taken from it are read-only too)."""
    array.flags.writeable = False
    return array


def reset_infos(agents: Sequence[str], masks: np.ndarray, tasks: Sequence[str], vehicle_task: np.ndarray,
                active: np.ndarray, budget_j: np.ndarray, dual_price: np.ndarray) -> AgentDict:
    """The infos ``reset()`` returns (agent -> read-only dict), built on first read. The arrays are read then,
    so the caller passes ones that nothing changes in place later (the simulator replaces its arrays, it does
    not overwrite them)."""
    return _LazyAgentDict(agents, _RoundInfos(masks, tasks, vehicle_task, reset=(active, budget_j, dual_price)))


def step_infos(agents: Sequence[str], masks: np.ndarray, tasks: Sequence[str], vehicle_task: np.ndarray,
               m: RoundMetrics) -> AgentDict:
    """The infos ``step()`` returns for the round ``m`` describes (same rule on the arrays as ``reset_infos``)."""
    return _LazyAgentDict(agents, _RoundInfos(masks, tasks, vehicle_task, metrics=m))


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
