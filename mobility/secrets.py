"""Credentials, from the environment or an Airflow connection, never from files in the repo.

The registry names a credential (e.g. ``SCOOTCO_MDS_TOKEN``). It is looked up as the environment
variable of that name, then as the password of the Airflow connection of the same name in lower
case (which Airflow itself may read from ``AIRFLOW_CONN_<NAME>`` or a secrets backend).
The value is never logged; only the name appears in errors.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

PSEUDONYM_KEY = "MOBILITY_PSEUDONYM_KEY"


class MissingSecret(LookupError):
    pass


def get_secret(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("AIRFLOW_CTX_DAG_ID") or os.environ.get(f"AIRFLOW_CONN_{name}"):
        try:
            from airflow.sdk import BaseHook  # imported lazily: Airflow is heavy and optional here

            conn = BaseHook.get_connection(name.lower())
            if conn.password:
                return conn.password
        except Exception as exc:  # noqa: BLE001 - any lookup failure means "not configured"
            log.debug("no Airflow connection %s: %s", name.lower(), type(exc).__name__)
    raise MissingSecret(
        f"secret '{name}' is not set: export it as an environment variable "
        f"or define the Airflow connection '{name.lower()}'"
    )


def pseudonym_key() -> bytes:
    """The consortium's keyed-hash secret for device and trip ids."""
    return get_secret(PSEUDONYM_KEY).encode("utf-8")
