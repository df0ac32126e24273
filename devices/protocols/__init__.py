"""Sans-I/O protocol codecs: bytes/registers/messages in, typed events out."""
