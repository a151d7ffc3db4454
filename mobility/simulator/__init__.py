"""The partner simulator: a deterministic world and an HTTP server speaking MDS/GBFS/GTFS.

``world`` holds the data (trips, events, vehicles, stations, daily files), ``server`` the HTTP
surface (FastAPI), ``gtfs`` the transit feed, ``drops`` the file-drop writer and ``consortium``
the per-partner behaviour of the demo. Everything is a pure function of (city, seed, behaviour),
so any hour can be regenerated identically in any process.
"""

from mobility.simulator.consortium import (
    DEFAULT_BEHAVIOUR,
    OperatorBehaviour,
    PartnerSpec,
    load_demo_partners,
)
from mobility.simulator.world import World

__all__ = ["DEFAULT_BEHAVIOUR", "OperatorBehaviour", "PartnerSpec", "World", "load_demo_partners"]
