"""The daemon as a process: serve (listen, load, reload), signals, and systemd's notify protocol."""
