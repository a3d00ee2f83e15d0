"""The control plane: the admin API (jobs, deploys, rollbacks) on its own port, one per fleet (`lomar control-plane`).

It owns the lifecycle store (job records, deploy history) and publishes deploys in the shared model repository;
gateways and Tritons follow the repository, workers run the jobs it queues. See docs/fleet.md.
"""
