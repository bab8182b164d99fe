"""Device profiles: devices not at hand, described by sustained compute and memory rates (data in
device_profiles.yaml, extendable with $EDGEFACTORY_HOME/devices.yaml), for roofline estimates.

The chat maps a user's words ("a Raspberry Pi 4", "安卓手机") to a profile through its aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from factory.errors import ConfigError, NotFoundError
from factory.registry import suggest
from targets.base import PRECISIONS

PROFILES_FILE = Path(__file__).with_name("device_profiles.yaml")
KINDS = ("cpu", "gpu", "npu")
REQUIRED = ("name", "kind", "targets", "precisions", "fp32_gflops", "int8_gops", "memory_gbps", "basis")
OPTIONAL = ("fp16_gflops", "cache_mb", "aliases")


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str
    kind: str
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    fp32_gflops: float
    int8_gops: float
    memory_gbps: float
    basis: str
    fp16_gflops: float | None = None
    cache_mb: float = 0.0
    aliases: tuple[str, ...] = field(default=())

    @property
    def short_name(self) -> str:
        """The name without its parenthesised details: "Raspberry Pi 5", "Snapdragon 8 Gen 3 phone, CPU"."""
        return self.name.split(" (")[0]

    def peak_ops(self, precision: str) -> float:
        """Sustained multiply-add rate for `precision`, in operations (2 per MAC) per second."""
        rate = {"fp32": self.fp32_gflops, "fp16": self.fp16_gflops or self.fp32_gflops, "int8": self.int8_gops}
        return rate[precision] * 1e9

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def _profile(pid: str, raw: dict, source: Path) -> DeviceProfile:
    where = f"device profile {pid!r} in {source}"
    if not isinstance(raw, dict):
        raise ConfigError(f"The {where} is not a mapping of fields.", fix="See the comment at the top of "
                          f"{PROFILES_FILE.name} for the fields.")
    missing = [k for k in REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    problems = [f"missing {', '.join(missing)}"] if missing else []
    problems += [f"unknown field {k!r}" + (f" ({hint.strip().rstrip('?').lower()}?)" if (hint := suggest(k, [*REQUIRED, *OPTIONAL])) else "")
                 for k in unknown]
    if not missing:
        if raw["kind"] not in KINDS:
            problems.append(f"kind {raw['kind']!r} is not one of {', '.join(KINDS)}")
        bad = [p for p in raw["precisions"] if p not in PRECISIONS]
        if bad:
            problems.append(f"precisions {bad} are not among {', '.join(PRECISIONS)}")
        for key in ("fp32_gflops", "int8_gops", "memory_gbps", "fp16_gflops", "cache_mb"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                problems.append(f"{key} must be a positive number, got {value!r}")
    if problems:
        raise ConfigError(f"The {where} is invalid: " + "; ".join(problems) + ".",
                          fix="Correct the entry; every rate is a sustained number (GFLOPS, GOPS, GB/s).")
    return DeviceProfile(id=pid, name=raw["name"], kind=raw["kind"], targets=tuple(raw["targets"]),
                         precisions=tuple(raw["precisions"]), fp32_gflops=float(raw["fp32_gflops"]),
                         int8_gops=float(raw["int8_gops"]), memory_gbps=float(raw["memory_gbps"]), basis=raw["basis"],
                         fp16_gflops=None if raw.get("fp16_gflops") is None else float(raw["fp16_gflops"]),
                         cache_mb=float(raw.get("cache_mb", 0)),
                         aliases=tuple(str(a).lower() for a in raw.get("aliases", ())))


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Device profiles {path} cannot be read: {exc}", fix="Fix the YAML syntax.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Device profiles {path} must map profile ids to fields.", fix="See device_profiles.yaml.")
    return data


def load_profiles(home: Path | None = None) -> dict[str, DeviceProfile]:
    """The shipped profiles plus (overriding by id) those in `home`/devices.yaml."""
    sources = [PROFILES_FILE] + ([home / "devices.yaml"] if home and (home / "devices.yaml").is_file() else [])
    profiles: dict[str, DeviceProfile] = {}
    for source in sources:
        for pid, raw in _read(source).items():
            profiles[str(pid)] = _profile(str(pid), raw, source)
    return profiles


def find_profile(words: str, profiles: dict[str, DeviceProfile]) -> DeviceProfile:
    """The profile named by id or alias in `words` (case-insensitive); the longest alias wins."""
    text = words.lower().strip()
    if text in profiles:
        return profiles[text]
    hits = [(len(alias), p) for p in profiles.values() for alias in (p.id, *p.aliases) if alias in text]
    if hits:
        return max(hits, key=lambda h: h[0])[1]
    names = [a for p in profiles.values() for a in (p.id, *p.aliases)]
    raise NotFoundError(f"No device profile matches {words!r}.{suggest(text, names)}",
                        fix=f"Use one of: {', '.join(profiles)}, or add a profile to devices.yaml in the workspace.")
