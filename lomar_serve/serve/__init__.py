"""One box, one command (`lomar serve`): Triton and a gateway, and with an admin token the control plane and a
worker, as supervised child processes that never outlive it."""
