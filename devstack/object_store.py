"""The object store under the durable Kafka broker: SeaweedFS's S3 API over the stack's data dir.

Chosen over lighter S3 servers because it honours conditional writes (If-Match /
If-None-Match): Tansu relies on them to hand out each offset once when several producers write
one partition at once; a server that ignores them loses acknowledged messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from devstack.component import Component, data_path, http_answers
from devstack.config import StackConfig, object_store_block
from devstack.installer import InstallPaths

# The only identity of the object store: Tansu's (the store listens on loopback only).
STORE_KEY, STORE_SECRET = "tansu", "tansusecret"


def _has_volume_server(response: httpx.Response) -> bool:
    try:
        centers = response.json()["Topology"]["DataCenters"]
        return any(rack["DataNodes"] for center in centers for rack in center["Racks"])
    except (ValueError, KeyError, TypeError):
        return False


def object_store_answers(host: str, block: Mapping[str, int]) -> bool:
    """True once the object store can serve what it holds: its master leads and knows the
    volume server (after a restart the master waits some seconds for its election, and the S3
    API answers 500 meanwhile: Tansu would give up), and its filer and S3 API are up."""
    master, filer, s3 = (
        f"http://{host}:{block[f'{part}.port']}" for part in ("master", "filer", "s3")
    )
    return (
        http_answers(f"{master}/dir/status", _has_volume_server)
        and http_answers(f"{filer}/healthz", lambda response: response.status_code == 200)
        and http_answers(f"{s3}/healthz", lambda response: response.status_code == 200)
    )


def object_store(config: StackConfig, paths: InstallPaths) -> Component:
    """SeaweedFS's S3 API over the stack's data dir, under Tansu's object-store engine.

    Chosen over lighter S3 servers because it honours conditional writes (If-Match /
    If-None-Match): Tansu relies on them to hand out each offset once when several producers
    write one partition at once; a server that ignores them loses acknowledged messages.
    """
    host = config.host
    block = object_store_block(config.ports.object_store)
    store_dir = data_path(config, "object-store")
    identities = store_dir / "identities.json"
    url = f"http://{host}:{block['s3.port']}"
    command = [str(paths.seaweedfs), "server", "-ip", host, "-ip.bind", host]
    command += ["-dir", str(store_dir / "volumes"), "-s3", "-s3.config", str(identities)]
    command += [f"-{option}={port}" for option, port in block.items()]
    # Only what Tansu needs: no Iceberg or Lance catalogs, small volumes, a quick stop.
    command += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]
    command += ["-volume.max=0", "-volume.preStopSeconds=0"]

    def prepare() -> None:
        (store_dir / "volumes").mkdir(parents=True, exist_ok=True)
        identity = {
            "name": "tansu",
            "credentials": [{"accessKey": STORE_KEY, "secretKey": STORE_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        identities.write_text(json.dumps({"identities": [identity]}))

    return Component(
        "object-store",
        url,
        command,
        {},
        tuple(block.values()),
        lambda: object_store_answers(host, block),
        prepare=prepare,
        purpose="S3 object store for Kafka (SeaweedFS)",
    )
