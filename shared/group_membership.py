"""Whether a service's consumers have joined their consumer group, and what each one holds.

aiokafka starts a consumer before it has joined its group: the join (and the partitions it is
given) comes a few seconds later, from the group coordinator. A service is ready (`/healthz`)
only once each of its consumers has been through one join, which the consumer's rebalance
listener reports. A join may give a consumer no partition at all (more replicas than
partitions): it has joined all the same, and takes partitions at the next rebalance.
"""

from __future__ import annotations

from aiokafka import ConsumerRebalanceListener, TopicPartition


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """One consumer's rebalance listener: notes its partitions after each join."""

    def __init__(self, membership: GroupMembership, name: str) -> None:
        self.membership = membership
        self.name = name

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.membership.held[self.name] = set()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.membership.held[self.name] = set(assigned)


class GroupMembership:
    """The service's consumers by name: None until the first join, then their partitions."""

    def __init__(self) -> None:
        self.held: dict[str, set[TopicPartition] | None] = {}

    def listener(self, name: str) -> ConsumerRebalanceListener:
        """The rebalance listener of the consumer `name` (one per subscriber)."""
        self.held[name] = None
        return _Listener(self, name)

    def waiting(self) -> list[str]:
        """The consumers that have not joined yet."""
        return [name for name, partitions in self.held.items() if partitions is None]

    def partitions(self) -> dict[str, list[str]]:
        """Per consumer that has joined, the partitions it holds now (`topic/partition`)."""
        return {
            name: sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)
            for name, partitions in self.held.items()
            if partitions is not None
        }
