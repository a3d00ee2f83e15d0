"""Model lifecycle: retrain jobs (training, export, verification as subprocesses), deploys and rollbacks with
zero-downtime version switches in Triton, and the admin API's access rules. See docs/lifecycle.md."""
