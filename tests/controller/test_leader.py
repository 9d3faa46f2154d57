"""Leader election's pure parts: where the Lease lives and how its spec moves."""
from __future__ import annotations

from controller.leader import lease_spec, options_from_env


def test_the_lease_lives_in_the_pods_namespace_and_names_the_pod() -> None:
    pod = options_from_env({"POD_NAMESPACE": "fleetgate-system", "POD_NAME": "fleetgate-controller-7d9-x2"})
    assert (pod.namespace, pod.name, pod.identity) == ("fleetgate-system", "fleetgate-controller",
                                                       "fleetgate-controller-7d9-x2")
    assert (pod.lease_duration, pod.renew_deadline, pod.retry_period) == (15, 10.0, 2.0)
    assert options_from_env({}).namespace == "kube-system" and options_from_env({}).identity == ""


def test_acquire_time_and_transitions_move_only_when_the_holder_changes() -> None:
    first = lease_spec(None, "a", 15, "t1")
    assert first == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "t1",
                     "renewTime": "t1", "leaseTransitions": 0}
    renewed = lease_spec(first, "a", 15, "t2")
    assert (renewed["acquireTime"], renewed["renewTime"], renewed["leaseTransitions"]) == ("t1", "t2", 0)
    taken = lease_spec(renewed, "b", 15, "t3")
    assert (taken["holderIdentity"], taken["acquireTime"], taken["leaseTransitions"]) == ("b", "t3", 1)
    released = {**taken, "holderIdentity": None}
    assert lease_spec(released, "c", 15, "t4")["leaseTransitions"] == 1  # a free Lease is no transition
