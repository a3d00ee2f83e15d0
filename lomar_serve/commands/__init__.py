"""Thin `lomar` subcommand modules for the gateway client (the dispatcher needs one module per command)."""
