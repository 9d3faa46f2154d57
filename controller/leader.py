"""--leader-elect: hold a coordination.k8s.io/v1 Lease on the hub; only the holder writes.

client-go's leaderelection, in small: every `retry_period` the candidate reads the Lease;
it takes a Lease that is free (no holder) or expired, and the holder renews it. Expiry is
judged by the local clock from when this candidate last saw the Lease record change, not
by the holder's renewTime, so clock skew between replicas does not matter. Every write
carries the resourceVersion it read: a 409 means another candidate got there first. The
holder stops writing once it has not renewed for `renew_deadline` (< lease duration),
before anyone else may take over; on a clean stop it releases the Lease so a standby takes
over at its next try instead of after the lease duration.

Why not kubernetes_asyncio.leaderelection (checked at 36.1, issue 15 item 9): it lacks
what this controller relies on.
- No release on shutdown: nothing gives the Lease up, so a rolling update leaves the
  controller without a writer for a whole lease duration (client-go's ReleaseOnCancel).
- One campaign per `run()`: once leadership is lost `run()` returns and the candidate
  never campaigns again; an error that is not an ApiException (the API server refusing
  connections: aiohttp's ClientConnectorError) escapes `run()` and ends it too.
- The renew deadline is judged between attempts on the wall clock (time.time()); an
  API call without a timeout can overrun it, and a clock step moves it. Leadership is
  only visible as the start/stop coroutines, with no `is_leader` a writer can ask right
  before each write.
- Times are written from a naive local datetime with a "Z" appended (wrong outside UTC),
  and leaseTransitions is never counted.
- It needs the kubernetes_asyncio ApiClient; every other call here goes through
  fleet.kube's client (one connection pool, one error vocabulary: KubeError/Unreachable).
- Its Config insists on retry_period >= 1 s, which keeps sub-second takeover tests out.
So this module stays (tests/controller/test_leader.py), the same algorithm as client-go's.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from fleet.kube import LEASES, KubeError, Raw, Unreachable
from fleet.tasks import cancel_and_wait

log = logging.getLogger("fleetgate.controller.leader")

LEASE_NAME = "fleetgate-controller"
LEASE_NAMESPACE = "kube-system"


@dataclass(frozen=True, slots=True)
class LeaderOptions:
    name: str = LEASE_NAME
    namespace: str = LEASE_NAMESPACE
    lease_duration: int = 15      # seconds (leaseDurationSeconds is an integer)
    renew_deadline: float = 10.0  # the holder stops writing when it has not renewed for this long
    retry_period: float = 2.0
    identity: str = ""            # default: hostname_pid_random


def default_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def options_from_env(env: Mapping[str, str] = os.environ) -> LeaderOptions:
    """In a pod (manifests/base/controller) the Lease lives in the pod's namespace, the one
    its Role allows, and the pod's name is the holder; elsewhere kube-system and a
    hostname_pid_random identity."""
    return LeaderOptions(namespace=env.get("POD_NAMESPACE") or LEASE_NAMESPACE,
                         identity=env.get("POD_NAME") or "")


def micro_time(when: datetime) -> str:
    """metav1.MicroTime as the API server writes it."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(current: Raw | None, identity: str, duration: int, now: str) -> Raw:
    """The spec that makes `identity` the holder: acquireTime and leaseTransitions move only
    when the holder changes."""
    spec = dict(current or {})
    if spec.get("holderIdentity") != identity:
        spec["acquireTime"] = now
        if spec.get("holderIdentity"):
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        else:
            spec.setdefault("leaseTransitions", 0)
    spec.update(holderIdentity=identity, leaseDurationSeconds=duration, renewTime=now)
    return spec


class LeaderElector:
    """Campaigns for the Lease until closed; `is_leader` says whether we may write now."""

    def __init__(self, client: Any, options: LeaderOptions = LeaderOptions(), *,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.client = client
        self.options = options
        self.identity = options.identity or default_identity()
        self.on_change = on_change
        self._leader = False
        self._renewed_at = 0.0               # loop time of our last successful acquire/renew
        self._observed: tuple[Any, ...] = ()  # the Lease record last seen
        self._observed_at = 0.0              # loop time it was first seen like that
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        self._check_deadline()
        return self._leader

    def _check_deadline(self) -> None:
        if self._leader and self._loop_time() - self._renewed_at > self.options.renew_deadline:
            self._set(False, "not renewed within the renew deadline")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._campaign(), name="controller-leader")

    async def close(self, *, release: bool = True) -> None:
        """Stop campaigning; `release` gives the Lease up (release=False: as if it crashed)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._leader and release:
            await self._release()
        self._set(False, "stopped")

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    def _set(self, leader: bool, why: str) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        log.info("lease %s/%s: %s %s (%s)", self.options.namespace, self.options.name, self.identity,
                 "is the leader" if leader else "is not the leader", why)
        if self.on_change is not None:
            try:
                self.on_change(leader)
            except Exception:
                log.exception("leader change callback failed")

    async def _campaign(self) -> None:
        while True:
            try:
                if await self._try():
                    self._renewed_at = self._loop_time()
                    self._set(True, "acquired or renewed the Lease")
                else:
                    self._set(False, "the Lease is held by another")
            except asyncio.CancelledError:
                raise
            except (KubeError, Unreachable) as exc:
                log.warning("lease %s/%s: %s", self.options.namespace, self.options.name, exc)
                self._check_deadline()
            await asyncio.sleep(self.options.retry_period)

    async def _try(self) -> bool:
        """One acquire-or-renew attempt; True when we hold the Lease after it."""
        o, client, version = self.options, self.client, LEASES.versions[0]
        now = micro_time(datetime.now(timezone.utc))
        try:
            lease = await client.get(LEASES, version, o.namespace, o.name)
        except KubeError as exc:
            if not exc.not_found:
                raise
            body = {"apiVersion": LEASES.api_version(version), "kind": "Lease",
                    "metadata": {"name": o.name, "namespace": o.namespace},
                    "spec": lease_spec(None, self.identity, o.lease_duration, now)}
            try:
                await client.create(LEASES, version, body)
            except KubeError as exc2:
                if exc2.conflict:
                    return False  # another candidate created it first
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"),
                  (lease.get("metadata") or {}).get("resourceVersion"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._loop_time()
        duration = float(spec.get("leaseDurationSeconds") or o.lease_duration)
        if holder and holder != self.identity and self._loop_time() < self._observed_at + duration:
            return False  # held, and renewed within its duration as far as we have seen
        lease["spec"] = lease_spec(spec, self.identity, o.lease_duration, now)
        try:
            await client.replace(LEASES, version, lease)  # carries the resourceVersion we read
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        return True

    async def _release(self) -> None:
        """Give the Lease up so a standby need not wait out its duration."""
        o = self.options
        self._set(False, "stopping")
        try:
            lease = await self.client.get(LEASES, LEASES.versions[0], o.namespace, o.name)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1,
                             "renewTime": micro_time(datetime.now(timezone.utc))}
            await self.client.replace(LEASES, LEASES.versions[0], lease)
        except (KubeError, Unreachable) as exc:
            log.warning("lease %s/%s not released: %s", o.namespace, o.name, exc)
