"""The job worker (`lomar worker`): claims queued retrain jobs from the store and runs their stages (training,
export, verification) as processes, locally or as Kubernetes Jobs, heartbeating while they run.
See docs/lifecycle.md."""
