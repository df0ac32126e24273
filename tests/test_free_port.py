"""Ports handed to simulators that bind them later must not be ones the kernel gives to outgoing connections."""

from __future__ import annotations

import socket

from simulators.broker import _ephemeral_low, free_port


def test_free_port_is_below_the_ephemeral_range_and_a_server_can_bind_it():
    low = _ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert 1024 < port < low
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass


def test_free_port_falls_back_to_the_kernels_choice_when_no_range_is_left_below(tmp_path):
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("10500\t60999\n")
    assert free_port(narrow) >= _ephemeral_low()  # bind(0): the kernel's range on this machine
    garbled = tmp_path / "garbled"
    garbled.write_text("not numbers")
    assert _ephemeral_low(garbled) == 32768
