"""Subcommands of `tp-gym`; see `tp_gym.cli`."""
