"""Clients of the running processes: the Python client of the gateway and the client commands of `lomar`
(classify, embed, reconstruct, collections, search through a gateway; jobs, deploy, rollback through the
control plane's admin API)."""
