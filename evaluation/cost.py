"""What compute costs: wall time x devices x the price per device-hour from the settings.

The inference engine and CPU training use the whole machine, so a CPU hour is one machine hour at
`cpu_hour_price`; on a GPU each device counts at `gpu_hour_price`.
"""

from registry.settings import Settings, get_settings


def hour_price(device: str = "cpu", settings: Settings | None = None) -> float:
    settings = settings or get_settings()
    return settings.gpu_hour_price if device.startswith("cuda") else settings.cpu_hour_price


def run_cost(seconds: float, settings: Settings | None = None, device: str = "cpu", devices: int = 1) -> float:
    """USD for `seconds` of wall time on `devices` devices of this kind."""
    return round(seconds / 3600 * max(1, devices) * hour_price(device, settings), 6)


def cost_per_1k_tokens(
    seconds: float, tokens: int, settings: Settings | None = None, device: str = "cpu"
) -> float | None:
    """USD per 1,000 generated tokens at the measured speed; None before any token."""
    if tokens <= 0:
        return None
    return round(run_cost(seconds, settings, device) / tokens * 1000, 6)
