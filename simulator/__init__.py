"""offload-bridge: simulator — a stand-in for the Offload API (``offload-bridge simulator``).

Modules: ``app`` (factory and state), ``api`` (Offload's endpoints), ``control`` (``/_sim``), ``models``
(request bodies, envelope), ``store`` (cases and their truth), ``engine`` (lifecycle scenarios), ``webhooks``
(delivery and signing), ``faults`` (fault knobs and seeded dice), ``settings`` (``SIMULATOR_*``), ``cli``,
``testing`` (helpers for other teams' tests). The product packages never import it.
"""
