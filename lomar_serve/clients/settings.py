"""Where the client commands find the processes they call (`lomar classify|embed|reconstruct|collections|search`:
a gateway; `lomar jobs|deploy|rollback`: the control plane), from LOMAR_* variables; `--url` and `--token` override
them, and `--api-key` the gateway's key. Every variable: docs/settings.md."""
from __future__ import annotations

import argparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from lomar_serve.clients import admin, gateway
from lomar_serve.common.processes import load_settings
from lomar_serve.common.settings import SETTINGS_CONFIG, ControlPlaneUrl, SentAdminToken, flag_overrides


class ClientSettings(BaseSettings):
    model_config = SETTINGS_CONFIG

    url: str = Field(gateway.DEFAULT_URL, description="the gateway the client commands call")
    api_key: SecretStr | None = Field(None, description="the API key the client commands send to the gateway "
                                                        "(`lomar keys create`; needed where it opens no scope)")
    control_plane_url: ControlPlaneUrl = admin.DEFAULT_URL
    admin_token: SentAdminToken = None


def client_settings(args: argparse.Namespace, program: str) -> ClientSettings | None:
    """The environment's settings with the command line's --url/--token; None (reasons on stderr) if invalid."""
    return load_settings(ClientSettings, program, flag_overrides(args, ClientSettings))
