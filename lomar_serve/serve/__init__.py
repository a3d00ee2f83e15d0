"""One box, one command (`lomar serve`): the gateway in this process, Triton supervised, and with an admin token
the control plane and a worker as child processes; none outlives it."""
