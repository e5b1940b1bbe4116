"""Whole groups of records (a source, a speaker, a session) and how many of them go where.

The counting behind every protocol in :mod:`ser_dist.data.splits`: grouping indices in natural order,
taking the leading groups whose clips come closest to a target, apportioning a quota over classes,
and dealing speakers into folds of even size. Pure functions of their arguments: no config, no errors.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

from .records import Record

# Bound on the local search that balances speaker_kfold folds (each step strictly improves them).
MAX_FOLD_IMPROVEMENTS = 10_000
FOLD_TRIALS = 20


def natural_key(text: str) -> list:
    """Sort key that orders ``spk2`` before ``spk10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def group_indices(records: list[Record], key: Callable[[Record], str]) -> dict[str, list[int]]:
    """Indices of ``records`` by ``key``, the keys in natural sort order."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(key(rec), []).append(i)
    return {name: groups[name] for name in sorted(groups, key=natural_key)}


def count_for_target(sizes: list[int], target: float, low: int, high: int) -> int:
    """How many leading items (between ``low`` and ``high``) sum closest to ``target``; ties take fewer."""
    high = max(low, min(high, len(sizes)))
    best_count, best_gap, running = low, math.inf, sum(sizes[:low])
    for count in range(low, high + 1):
        if count > low:
            running += sizes[count - 1]
        gap = abs(running - target)
        if gap < best_gap:
            best_count, best_gap = count, gap
    return best_count


def take_validation(candidates: list[str], sizes: dict[str, int], val_fraction: float, total: int) -> list[str]:
    """The first candidates whose clips come closest to ``val_fraction`` of all clips (at least one, one left to train)."""
    if val_fraction <= 0:
        return []
    count = count_for_target([sizes[s] for s in candidates], val_fraction * total, 1, len(candidates) - 1)
    return candidates[:count]


def at_least_one(expected: float) -> int:
    """A wanted split gets at least one clip; rounding alone would empty it on small corpora."""
    return max(1, round(expected)) if expected > 0 else 0


def apportion(total: int, weights: dict[str, int], order: list[str]) -> dict[str, int]:
    """Split ``total`` over classes in proportion to ``weights`` (largest remainder, ties in ``order``)."""
    weight_sum = sum(weights.values())
    exact = {name: total * weights[name] / weight_sum for name in order}
    quota = {name: math.floor(exact[name]) for name in order}
    remainder = total - sum(quota.values())
    for name in sorted(order, key=lambda n: -(exact[n] - quota[n]))[:remainder]:
        quota[name] += 1
    return quota


def speaker_folds(groups: dict[str, list[int]], k: int, seed: int) -> list[list[str]]:
    """Deal speakers into ``k`` folds balanced by clip count.

    Each trial deals speakers to the lightest fold (largest first in the first trial, in a seeded
    random order after that), then moves and swaps speakers between folds while that narrows the
    spread; the most even trial wins. Greedy dealing alone can leave folds a whole speaker apart.
    """
    rng = random.Random(seed)
    speakers = sorted(groups, key=natural_key)
    best: tuple[int, list[list[str]]] | None = None
    for trial in range(FOLD_TRIALS):
        order = list(speakers)
        rng.shuffle(order)  # the first trial's shuffle only breaks ties between speakers of equal size
        if trial == 0:
            order.sort(key=lambda s: -len(groups[s]))
        folds: list[list[str]] = [[] for _ in range(k)]
        clips = [0] * k
        for speaker in order:
            target = min(range(k), key=lambda f: (clips[f], len(folds[f]), f))
            folds[target].append(speaker)
            clips[target] += len(groups[speaker])
        for _ in range(MAX_FOLD_IMPROVEMENTS):
            if not _improve_folds(folds, clips, groups):
                break
        spread = sum(c * c for c in clips)
        if best is None or spread < best[0]:
            best = (spread, folds)
    assert best is not None
    return [sorted(f, key=natural_key) for f in best[1]]


def _improve_folds(folds: list[list[str]], clips: list[int], groups: dict[str, list[int]]) -> bool:
    """One move or swap from a heavier to a lighter fold that lowers the sum of squared fold sizes."""
    k = len(folds)
    for heavy in sorted(range(k), key=lambda f: -clips[f]):
        for light in sorted(range(k), key=lambda f: clips[f]):
            gap = clips[heavy] - clips[light]
            if gap <= 0:
                break
            if len(folds[heavy]) > 1:
                for speaker in folds[heavy]:
                    if len(groups[speaker]) < gap:  # moving s clips helps iff s < gap
                        folds[heavy].remove(speaker)
                        folds[light].append(speaker)
                        clips[heavy] -= len(groups[speaker])
                        clips[light] += len(groups[speaker])
                        return True
            for a in folds[heavy]:
                for b in folds[light]:
                    delta = len(groups[a]) - len(groups[b])
                    if 0 < delta < gap:
                        folds[heavy][folds[heavy].index(a)] = b
                        folds[light][folds[light].index(b)] = a
                        clips[heavy] -= delta
                        clips[light] += delta
                        return True
    return False
