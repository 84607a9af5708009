"""Supervision at the centre: devices that fall silent, and the incidents they open."""
