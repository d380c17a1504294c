"""decode: a details body into models, against orjson, msgspec untyped, json and pydantic v2."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hostup_async import decode_vm_details

from ._harness import Table
from ._targets import Target

TITLE = "Decoding"
# The case every target reads: many distinct 720-hour bodies, as a bulk fetch sees them.
MAIN_CASE = "720h distinct bodies"
TARGETS = (
    Target(
        "decode 720h, every sample touched / orjson + touch",
        ("cases", MAIN_CASE, "full_touch_vs_orjson_touch"),
        "<=",
        1.0,
    ),
    Target(
        "decode 720h usage_log=False / orjson.loads",
        ("cases", MAIN_CASE, "ratio_to_orjson", "hostup-async usage_log=False"),
        "<=",
        0.35,
    ),
)


def touch_sdk(vm: Any) -> float:
    """Read every value of every sample (and each hour key) of a decoded VMDetails."""
    t = 0.0
    for hour, s in vm.usage_log.items():
        hour  # noqa: B018 - touching the key, as touch_dict does
        t += (
            s.data_received
            + s.data_sent
            + s.mem_unit
            + s.probes
            + s.time
            + s.uptime
            + s.maxcpu
            + s.maxcpu_on
            + s.cpu
            + s.maxmem
            + s.maxmem_on
            + s.mem
            + s.maxdisk
            + s.template
            + s.ipv4_addresses
        )
    return t


def touch_dict(body: Any) -> float:
    """Read the same values from an untyped (orjson/json/msgspec) decode."""
    t = 0.0
    for hour, s in body["data"]["usage_log"].items():
        hour  # noqa: B018
        t += (
            s["data_received"]
            + s["data_sent"]
            + s["mem_unit"]
            + s["probes"]
            + s["time"]
            + s["uptime"]
            + s["maxcpu"]
            + s["maxcpu_on"]
            + s["cpu"]
            + s["maxmem"]
            + s["maxmem_on"]
            + s["mem"]
            + s["maxdisk"]
            + s["template"]
            + s["ipv4_addresses"]
        )
    return t


def contenders() -> dict[str, Callable[[bytes], Any]]:
    """Every way of decoding a details body that this benchmark compares."""
    import json

    import orjson

    from ._alt_models import PEnvelope

    return {
        "hostup-async": decode_vm_details,
        "hostup-async + touch": lambda b: touch_sdk(decode_vm_details(b)),
        "hostup-async usage_log=False": lambda b: decode_vm_details(b, usage_log=False),
        "msgspec untyped": msgspec.json.decode,
        "orjson.loads": orjson.loads,
        "orjson.loads + touch": lambda b: touch_dict(orjson.loads(b)),
        "json.loads": json.loads,
        "pydantic v2": PEnvelope.model_validate_json,
    }


def time_passes(
    decoders: dict[str, Callable[[bytes], Any]], bodies: list[bytes], passes: int
) -> dict[str, list[float]]:
    """Seconds per body for each contender, passes interleaved so drift hits all alike."""
    per_body: dict[str, list[float]] = {name: [] for name in decoders}
    for f in decoders.values():  # warm up: caches, lazily built validators
        f(bodies[0])
    for _ in range(passes):
        for name, f in decoders.items():
            t0 = time.perf_counter()
            for b in bodies:
                f(b)
            per_body[name].append((time.perf_counter() - t0) / len(bodies))
    return per_body


def run(quick: bool) -> dict[str, Any]:
    """Decode one body repeatedly, and many distinct bodies, with 24 h and 720 h logs."""
    from ._bodies import bodies as make_bodies

    decoders = contenders()
    cases = []
    for hours in (24, 720):
        count = (10 if quick else 60) if hours == 720 else (50 if quick else 400)
        cases.append((f"one {hours}h body", hours, make_bodies(1, hours) * count))
        cases.append((f"{hours}h distinct bodies", hours, make_bodies(count, hours)))
    passes = 3 if quick else 9
    results: dict[str, Any] = {"passes": passes, "cases": {}}
    for label, hours, bodies in cases:
        gc.collect()
        per_body = time_passes(decoders, bodies, passes)
        med = {name: statistics.median(ts) for name, ts in per_body.items()}
        base = med["orjson.loads"]
        results["cases"][label] = {
            "hours": hours,
            "bodies": len(bodies),
            "distinct": len(set(bodies)),
            "body_bytes": round(statistics.mean(len(b) for b in bodies)),
            "us_per_body": {n: round(med[n] * 1e6, 2) for n in decoders},
            "min_us_per_body": {n: round(min(per_body[n]) * 1e6, 2) for n in decoders},
            "ratio_to_orjson": {n: round(med[n] / base, 3) for n in decoders},
            "full_touch_vs_orjson_touch": round(
                med["hostup-async + touch"] / med["orjson.loads + touch"], 3
            ),
        }
    return results


def tables(result: dict[str, Any]) -> list[Table]:
    """Microseconds per body for every decoder and case, and the ratio to orjson."""
    cases = result["cases"]
    decoders = list(next(iter(cases.values()))["us_per_body"])
    rows = [
        [name]
        + [
            f"{c['us_per_body'][name]:,.1f} ({c['ratio_to_orjson'][name]:.2f}x)"
            for c in cases.values()
        ]
        for name in decoders
    ]
    rows.append(
        ["hostup-async + touch / orjson + touch"]
        + [f"{c['full_touch_vs_orjson_touch']:.3f}x" for c in cases.values()]
    )
    header = ["decoder"] + [
        f"{label} ({c['bodies']} x {c['body_bytes'] / 1000:,.0f} kB)" for label, c in cases.items()
    ]
    return [
        Table(
            f"decode: microseconds per body, median of {result['passes']} passes (vs orjson.loads)",
            header,
            rows,
            "Lower is better; *touch* reads every value of every usage sample.",
        )
    ]
