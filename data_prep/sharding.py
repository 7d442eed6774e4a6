"""Deterministic assignment of items to shards.

Same inputs -> same shards, independent of annotation row order, worker count and Beam
scheduling: items are ordered by a salted hash of their id (which also mixes classes
across shards) and dealt round-robin into a shard count fixed before any decoding, so a
file that fails to decode never moves other items between shards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Mapping, Sequence

from data_prep.items import InputError, Item

SHARD_PATTERN = re.compile(r"^(?P<split>[A-Za-z0-9_.\-]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """Everything a worker needs to write one shard, and a fingerprint of it."""

    split: str
    index: int
    count: int
    root: str  # directory the item paths are relative to
    items: tuple[Item, ...]
    fingerprint: str  # changes whenever the shard's bytes could change

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "index": self.index,
            "count": self.count,
            "root": self.root,
            "fingerprint": self.fingerprint,
            "items": [dataclasses.asdict(item) for item in self.items],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "ShardSpec":
        return ShardSpec(
            split=data["split"],
            index=data["index"],
            count=data["count"],
            root=data["root"],
            items=tuple(Item(**item) for item in data["items"]),
            fingerprint=data["fingerprint"],
        )


def _order_key(seed: int, item: Item) -> tuple[str, str]:
    return hashlib.sha256(f"{seed}:{item.media_id}".encode("utf-8")).hexdigest(), item.media_id


def _content_fields(item: Item) -> dict[str, Any]:
    """Item fields that reach the record bytes (not its annotation line number)."""
    fields = dataclasses.asdict(item)
    fields.pop("source")
    return fields


def plan_shards(
    items: Sequence[Item],
    roots: Mapping[str, str],
    *,
    shard_size: int,
    num_shards: int = 0,
    seed: int = 0,
    settings: Mapping[str, Any],
    splits: Sequence[str] = (),
) -> list[ShardSpec]:
    """Shards for every split (those in ``splits`` too, even when they end up empty).

    ``settings`` are the options that affect record bytes (frame options, schema and
    library versions); they go into every fingerprint so changing them rewrites shards.
    """
    by_split: dict[str, list[Item]] = {split: [] for split in splits}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    settings_json = json.dumps(settings, sort_keys=True)
    specs: list[ShardSpec] = []
    for split in sorted(by_split):
        if not _SPLIT_NAME.match(split):
            raise InputError(f"split name {split!r} cannot be used in shard file names (use letters, digits, _ . -)")
        ordered = sorted(by_split[split], key=lambda item: _order_key(seed, item))
        if not ordered:
            continue
        count = num_shards or max(1, math.ceil(len(ordered) / shard_size))
        if count > 99999:
            raise InputError(f"split {split}: {count} shards do not fit the 5-digit shard names; raise --shard_size")
        for index in range(count):
            members = tuple(ordered[index::count])
            digest = hashlib.sha256()
            digest.update(settings_json.encode("utf-8"))
            digest.update(json.dumps([split, index, count, roots[split]]).encode("utf-8"))
            for item in members:
                digest.update(json.dumps(_content_fields(item), sort_keys=True).encode("utf-8"))
            specs.append(ShardSpec(split, index, count, roots[split], members, digest.hexdigest()))
    return specs
