"""The Hayes/V.250 modem driver (sans-IO core and asyncio `HayesModem`)."""
