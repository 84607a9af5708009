"""A virtual network driven by hand: no event loop, no real time."""

from __future__ import annotations

from modem_drivers.virtual import PhoneNetwork, VirtualModem


class Bench:
    def __init__(self, network: PhoneNetwork | None = None) -> None:
        self.network = network or PhoneNetwork()

    def modem(self, name: str, profile: str = "generic", **kwargs) -> VirtualModem:
        modem = self.network.add_modem(name, profile, **kwargs)
        modem.set_dtr(True)
        return modem

    def run(self, seconds: float = 0.01) -> None:
        self.network.run_for(seconds)

    def send(self, modem: VirtualModem, data: bytes, settle: float = 0.01) -> bytes:
        """Type `data` at the modem, let `settle` seconds pass, return what it said."""
        modem.take_output()
        modem.receive(data)
        self.run(settle)
        return modem.take_output()

    def at(self, modem: VirtualModem, command: str, settle: float = 0.01) -> bytes:
        return self.send(modem, command.encode() + b"\r", settle)

    def quiet_echo(self, *modems: VirtualModem) -> None:
        for modem in modems:
            self.at(modem, "ATE0")
            modem.take_output()

    def connect(self, caller: VirtualModem, callee: VirtualModem, number: str) -> None:
        """Dial, let the callee auto-answer, wait for CONNECT on both sides."""
        self.at(callee, "ATS0=1")
        self.send(caller, f"ATD{number}\r".encode())
        for _ in range(600):
            self.run(0.1)
            if caller.in_call and callee.in_call:
                caller.take_output()
                callee.take_output()
                return
        raise AssertionError("no CONNECT within 60 s")
