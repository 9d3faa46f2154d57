"""status.loadBalancer.ingress on the hub Ingresses this gateway serves (live hubs).

`status_updates` is pure: from the hub's objects, which Ingresses need their status set to
the publish address (or cleared, when they are no longer ours and still show it). The
StatusWriter follows the fleet and sends those, one at a time, through the hub source's
`patch_ingress_status`; it writes only when the Ingress shows something else, and not
again while a snapshot that predates its own write is still the latest.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

from fleet.snapshot import ClusterObjects, FleetSnapshot
from fleet.tasks import cancel_and_wait
from fleet.view import FleetView, LiveCluster, Unfollow, not_following

from .routing.build import selected_ingresses

log = logging.getLogger("fleetgate.gateway.status")

RETRY_BASE = 0.2
RETRY_CAP = 5.0

LoadBalancer = tuple[Mapping[str, str], ...]


def load_balancer_value(address: str) -> LoadBalancer:
    """`[{"ip": ...}]` for an IP address, `[{"hostname": ...}]` for a name."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return ({"hostname": address},)
    return ({"ip": address},)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    namespace: str
    name: str
    ingress: LoadBalancer  # () clears it
    resource_version: str  # of the Ingress this update was computed from


def status_updates(hub: ClusterObjects, *, address: str, classes: Sequence[str]) -> list[StatusUpdate]:
    """What to write so every served Ingress shows `address` and no other shows it."""
    desired = load_balancer_value(address)
    served = {(i.meta.namespace, i.meta.name) for i in selected_ingresses(hub, classes)}
    updates = []
    for (namespace, name), ing in sorted(hub.ingresses.items()):
        current = tuple(dict(x) for x in ing.load_balancer_ingress)
        if (namespace, name) in served:
            if current != desired:
                updates.append(StatusUpdate(namespace, name, desired, ing.meta.resource_version))
        elif current == desired:  # no longer ours: take our address back
            updates.append(StatusUpdate(namespace, name, (), ing.meta.resource_version))
    return updates


class StatusWriter:
    """Follows a fleet and keeps the served Ingresses' status on the publish address."""

    def __init__(self, fleet: FleetView, hub: LiveCluster, *, address: str, classes: Sequence[str]) -> None:
        self.fleet = fleet
        self.hub = hub
        self.address = address
        self.classes = tuple(classes)
        self.writes = 0
        self._latest: FleetSnapshot | None = None
        self._sent: dict[tuple[str, str], tuple[LoadBalancer, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._unfollow: Unfollow = not_following

    def start(self) -> None:
        self._unfollow = self.fleet.follow(self._on_snapshot)

    async def close(self) -> None:
        self._unfollow()
        self._unfollow = not_following
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _on_snapshot(self, snapshot: FleetSnapshot) -> None:
        self._latest = snapshot
        if self._task is None or self._task.done():
            # a task only while there is work, so nothing lingers once writes are done
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-status")

    def _pending(self) -> list[StatusUpdate]:
        snapshot = self._latest
        if snapshot is None:
            return []
        updates = status_updates(snapshot.hub, address=self.address, classes=self.classes)
        present = set(snapshot.hub.ingresses)
        for key in [k for k in self._sent if k not in present]:
            del self._sent[key]
        return [u for u in updates if self._sent.get((u.namespace, u.name)) != (u.ingress, u.resource_version)]

    async def _run(self) -> None:
        delay = RETRY_BASE
        while True:
            todo = self._pending()
            if not todo:
                return
            failed = False
            for u in todo:
                try:
                    await self.hub.patch_ingress_status(u.namespace, u.name, u.ingress)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # retried below; the API may be down for a while
                    log.warning("status of Ingress %s/%s not written: %s", u.namespace, u.name, exc)
                    failed = True
                    continue
                self._sent[(u.namespace, u.name)] = (u.ingress, u.resource_version)
                self.writes += 1
                log.info("status of Ingress %s/%s: loadBalancer.ingress %s", u.namespace, u.name,
                         [dict(x) for x in u.ingress])
            if failed:
                await asyncio.sleep(delay)
                delay = min(RETRY_CAP, delay * 2)


def start_status_writer(fleet: FleetView, *, address: str, classes: Sequence[str]) -> StatusWriter | None:
    """A running StatusWriter (the caller closes it), or None when the hub is not live
    (files have no status)."""
    hub = fleet.live_hub()
    if hub is None:
        log.warning("--publish-address %s: the hub is not a live cluster; no Ingress status is written",
                    address)
        return None
    writer = StatusWriter(fleet, hub, address=address, classes=classes)
    writer.start()
    return writer
