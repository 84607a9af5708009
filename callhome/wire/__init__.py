"""The call-home protocol (sans-IO): framing, Noise IK handshake, reliable transfer, messages."""
