"""Transports: serial, Modbus, MQTT. They own sockets, ports and threads."""
