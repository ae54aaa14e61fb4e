"""Bad input: errors that name what is wrong, and a report of what was skipped.

Readers either raise :class:`DatasetError` (the input cannot be used at all: a missing
directory, a schema without a required field) or, for one bad episode among many, record a
counted skip in a :class:`SkipReport` that callers print at the end of a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DatasetError(ValueError):
    """The dataset (or one file or episode of it) cannot be read as asked."""


@dataclass
class SkipReport:
    """Counts of skipped episodes/clips by reason, with a few examples of each."""

    max_examples: int = 5
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(where)

    def merge(self, other: "SkipReport") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            shown = self.examples.setdefault(reason, [])
            for where in other.examples.get(reason, []):
                if len(shown) < self.max_examples:
                    shown.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:  # a report is "truthy" when something was skipped
        return self.total > 0

    def format(self) -> str:
        if not self.counts:
            return "skipped: nothing"
        lines = [f"skipped: {self.total}"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {n:6d} x {reason}")
            for where in self.examples.get(reason, []):
                lines.append(f"           e.g. {where}")
        return "\n".join(lines)
