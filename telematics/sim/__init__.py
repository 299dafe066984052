"""Fleet simulator: realistic in-vehicle units for the demo and the load benchmarks.

Pure, seeded generative parts (``world``, ``tires``, ``drivers``, ``vehicle``,
``outbox``) and the networked parts (``unit``, ``fleet``, ``cli``). See
:func:`run_fleet` and ``python -m telematics.sim --help``.
"""

from telematics.sim.cli import add_arguments, simulate_command
from telematics.sim.config import SimConfig, UnitSpec
from telematics.sim.fleet import read_tokens, run_fleet
from telematics.sim.stats import FleetStats, Reservoir

__all__ = [
    "FleetStats",
    "Reservoir",
    "SimConfig",
    "UnitSpec",
    "add_arguments",
    "read_tokens",
    "run_fleet",
    "simulate_command",
]
