"""LoMaR serving, one package per process (no torch in any of them):

- `gateway/`: `lomar gateway`, the data plane (inference, collections, the web page) in front of Triton;
- `control_plane/`: `lomar control-plane`, the admin API (jobs, deploys, rollbacks), one per fleet;
- `worker/`: `lomar worker`, claims queued jobs and runs training, export and verification as processes;
- `triton/`: `lomar triton`, the bundled Triton server, supervised;
- `serve/`: `lomar serve`, the roles above as child processes of one command on one box;
- `jobs/`: the job records and deploy history the control plane and the workers share (the store);
- `search/`: similar-image collections (stores, vector engines, re-indexing), used by the gateway;
- `clients/`: the Python client and the client commands (`lomar classify|collections|jobs|deploy`...);
- `common/`: plumbing every role shares (processes, logging, settings, HTTP errors, version holds);
- `cli.py`: the `lomar` command, a dispatcher to each program's `main(argv)`.

Packages import `common/`, `jobs/`, `search/`, `triton/` and `contracts/`, never each other's process packages
(`tests/lomar_serve/test_structure.py` checks it).
"""
