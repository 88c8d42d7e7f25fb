"""A large valid state repository in the real layout, for the benchmarks."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import yaml

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"


def tenant_id(t: int) -> str:
    """The id of the t-th generated tenant."""
    return f"t{t:05d}"


def user_email(u: int) -> str:
    """The email (the id) of the u-th generated user."""
    return f"user{u:06d}@example.com"


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write one object as YAML, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def make_state(
    root: Path, roots: Path, instances: int, tenants: int, users: int, nodes: int
) -> None:
    """Write a valid state of that size under root; node roots go under roots.

    The content depends only on the sizes (fixed seed): each instance is a
    copy of the demo's IN1 with its services, every node is `connection:
    local`, every other tenant uses pusher with literal params, and each user
    is in 1 to 3 tenants.
    """
    rng = random.Random(1)
    for kind in ("integrations", "service-types"):
        shutil.copytree(DEMO / kind, root / kind)
    demo_instance = yaml.safe_load((DEMO / "instances/IN1.yaml").read_text())
    services = DEMO / "instances/IN1/services"
    for i in range(1, instances + 1):
        name = f"IN{i}"
        write_yaml(root / f"instances/{name}.yaml", demo_instance | {"id": name})
        shutil.copytree(services, root / f"instances/{name}/services")
    for n in range(nodes):
        instance, node = f"IN{n % instances + 1}", f"ND{n // instances + 1}"
        fields = {"name": f"bench {instance}/{node}", "connection": "local"}
        fields["root"] = str(roots / f"{instance}-{node}")
        write_yaml(root / f"instances/{instance}/nodes/{node}.yaml", fields)
    tenant_ids = [tenant_id(t) for t in range(tenants)]
    for t, tenant in enumerate(tenant_ids):
        data: dict[str, Any] = {
            "name": f"Tenant {t}",
            "instance": f"IN{t % instances + 1}",
            "rate-limit": 50 + t % 200,
            "integrations": ["echo", "pusher"] if t % 2 else ["echo"],
        }
        if t % 2:
            secret = rng.randbytes(12).hex()
            data["integration-params"] = {"pusher": {"key": tenant, "secret": secret}}
        write_yaml(root / f"tenants/{tenant}.yaml", data)
    for u in range(users):
        salt, digest = rng.randbytes(16).hex(), rng.randbytes(32).hex()
        email = user_email(u)
        write_yaml(
            root / f"users/{email}.yaml",
            {
                "email": email,
                "name": f"User {u}",
                "client-id": rng.randbytes(16).hex(),
                "tenants": rng.sample(tenant_ids, rng.randint(1, min(3, tenants))),
                "password-hash": f"$scrypt$ln=14,r=8,p=1${salt}${digest}",
            },
        )
