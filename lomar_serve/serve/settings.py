"""`lomar serve`'s settings: the gateway's, how it launches its own Triton, and the admin token that adds the
control plane and a worker. Every variable: docs/settings.md."""
from __future__ import annotations


from lomar_serve.common.settings import OptionalAdminToken
from lomar_serve.gateway.settings import Settings
from lomar_serve.triton.settings import TritonLaunchSettings


class ServeSettings(Settings, TritonLaunchSettings):
    """One box: the gateway on `host:port`, Triton on loopback (free ports unless pinned), and with an admin token
    the control plane and a worker, which read their own settings from the same environment."""

    admin_token: OptionalAdminToken = None
