"""Modem drivers: the Hayes/V.250 driver (`hayes`) and the virtual phone network (`virtual`)."""
