"""The key layout (DESIGN section 3): one place that spells every key.

All keys live under a configurable prefix (default ``/maomao/``), so several
collaborations, or a test, can share one etcd cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds the store keys under one prefix."""

    prefix: str = "/maomao/"

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    @property
    def tools(self) -> str:
        return f"{self.prefix}tools/"

    def tool(self, name: str) -> str:
        return f"{self.tools}{name}"

    @property
    def datasets(self) -> str:
        return f"{self.prefix}datasets/"

    def dataset(self, name: str) -> str:
        return f"{self.datasets}{name}"

    @property
    def schedules(self) -> str:
        return f"{self.prefix}schedules/"

    def schedule(self, tool: str) -> str:
        return f"{self.schedules}{tool}"

    @property
    def members(self) -> str:
        return f"{self.prefix}members/"

    def member(self, name: str) -> str:
        return f"{self.members}{name}"

    @property
    def requests(self) -> str:
        return f"{self.prefix}requests/"

    def request(self, run_id: str) -> str:
        return f"{self.requests}{run_id}"

    @property
    def claims(self) -> str:
        return f"{self.prefix}claims/"

    def claims_of(self, tool: str) -> str:
        return f"{self.claims}{tool}/"

    def claim(self, tool: str, run_id: str) -> str:
        return f"{self.claims_of(tool)}{run_id}"

    @property
    def all_runs(self) -> str:
        return f"{self.prefix}runs/"

    def runs(self, tool: str) -> str:
        return f"{self.prefix}runs/{tool}/"

    def run(self, tool: str, run_id: str) -> str:
        return f"{self.runs(tool)}{run_id}"

    @property
    def all_spikes(self) -> str:
        return f"{self.prefix}spikes/"

    def spikes(self, tool: str) -> str:
        return f"{self.prefix}spikes/{tool}/"

    def spike(self, tool: str, name: str) -> str:
        return f"{self.spikes(tool)}{name}"

    def name_of(self, key: str, collection: str) -> str:
        """The record name of ``key`` under ``collection`` (e.g. ``self.tools``)."""
        return key[len(collection) :]
