"""Device drivers, sans-I/O protocol codecs and transports."""
