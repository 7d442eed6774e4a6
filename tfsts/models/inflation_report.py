"""What `tfsts.models.inflation.inflate` did, as data: one `Transfer` per 2D weight
that went into a 3D weight, one `Kept` per 3D weight (or slice) that did not get one
and why, and the notes on exact compensations (`InflationReport`)."""

from __future__ import annotations

import dataclasses
from typing import Any

@dataclasses.dataclass(frozen=True)
class Transfer:
    """One 2D weight that went into one 3D weight."""

    source: str
    target: str
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    how: str


@dataclasses.dataclass(frozen=True)
class Kept:
    """A 3D weight (or slice of one) that no 2D weight went into, and why."""

    target: str
    shape: tuple[int, ...]
    reason: str


@dataclasses.dataclass
class InflationReport:
    """What `inflate` did: which 2D weight went to which 3D weight (`transfers`), which
    3D weights stayed at their initialiser or were zeroed and why (`kept`), which source
    weights were not used and why (`source_unused`: only a head that was not asked for),
    and the notes on exact compensations."""

    source: str
    target: str
    inflation: str
    preprocessing: str
    transfers: list[Transfer] = dataclasses.field(default_factory=list)
    kept: list[Kept] = dataclasses.field(default_factory=list)
    source_unused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    source_backbone_weights: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def used_source_weights(self) -> set[str]:
        return {t.source for t in self.transfers}

    @property
    def coverage(self) -> float:
        """Fraction of the source's conv/BN weights that went into the 3D model (1.0 or
        `inflate` would have raised)."""
        total = set(self.source_backbone_weights)
        return len(total & self.used_source_weights) / max(1, len(total))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "inflation": self.inflation,
            "preprocessing": self.preprocessing,
            "coverage": self.coverage,
            "transfers": [dataclasses.asdict(t) for t in self.transfers],
            "kept": [dataclasses.asdict(k) for k in self.kept],
            "source_unused": [{"source": s, "reason": r} for s, r in self.source_unused],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        n_src = len(self.source_backbone_weights)
        n_used = len(set(self.source_backbone_weights) & self.used_source_weights)
        lines = [
            f"Inflation {self.source} -> {self.target} ({self.inflation}); input normalisation "
            f"{self.preprocessing!r}",
            f"  source conv/BN weights used: {n_used}/{n_src} ({self.coverage:.0%}); "
            f"{len(self.transfers)} transfers; {len(self.kept)} 3D weights (or slices) not from the source",
        ]
        reasons: dict[str, int] = {}
        for k in self.kept:
            reasons[k.reason] = reasons.get(k.reason, 0) + 1
        lines += [f"  kept/zeroed x{n}: {reason}" for reason, n in reasons.items()]
        lines += [f"  source unused: {s} ({r})" for s, r in self.source_unused]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self) -> str:
        rows = [("2D weight", "2D shape", "3D weight", "3D shape", "how")]
        rows += [(t.source, str(t.source_shape), t.target, str(t.target_shape), t.how) for t in self.transfers]
        rows += [("-", "", k.target, str(k.shape), f"NOT FROM SOURCE: {k.reason}") for k in self.kept]
        rows += [(s, "", "-", "", f"UNUSED: {r}") for s, r in self.source_unused]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
        out = [fmt.format(*rows[0]), fmt.format(*("-" * w for w in widths), "-" * 3)]
        out += [fmt.format(*r) for r in rows[1:]]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()

    def __repr__(self) -> str:
        return (
            f"InflationReport(source={self.source!r}, target={self.target!r}, inflation={self.inflation!r}, "
            f"coverage={self.coverage:.3f}, transfers={len(self.transfers)}, kept={len(self.kept)})"
        )


__all__ = ["InflationReport", "Kept", "Transfer"]
