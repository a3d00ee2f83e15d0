"""What the control plane and the workers share: the store (job records, deploy history), job requests and their
plans, the rules on names and data paths, each job's files and progress, the memory budget, and the errors.
See docs/lifecycle.md."""
