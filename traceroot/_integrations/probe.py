"""Would each integration activate here? Answered from metadata, never importing a library.

`traceroot-run --check` asks this. Importing every installed framework to find out
takes many seconds (and some libraries reach the network at import), so each answer
comes from files alone: the library's distribution and its top module's location,
the instrumentor's distribution, and the library versions the instrumentor declares
it instruments (its `_instruments` literal, read as source; else its `instruments`
extra). OpenTelemetry's own instrumentors are judged the same way.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement

from traceroot import _distributions as distributions
from traceroot._integrations import entry_points
from traceroot._integrations.registry import OI, REGISTRY, Integration, parse_requested, pip_hint

WOULD_INSTRUMENT = "would instrument"
NOT_INSTALLED = "library not installed"
NOT_REQUESTED = "not requested"


@dataclass(frozen=True)
class Finding:
    """One integration's (or OpenTelemetry instrumentor's) answer, as --check prints it."""

    name: str
    state: str

    @property
    def would_instrument(self) -> bool:
        return self.state.startswith(WOULD_INSTRUMENT)


def find_spec_without_import(name: str) -> ModuleSpec | None:
    """Where module ``name`` would load from, executing no package ``__init__`` on the way.

    ``importlib.util.find_spec("a.b")`` imports ``a`` first; this asks the meta path
    finders level by level, passing each parent's search locations instead.
    """
    path: Sequence[str] | None = None
    spec: ModuleSpec | None = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        fullname = ".".join(parts[:depth])
        loaded = sys.modules.get(fullname)
        if loaded is not None and getattr(loaded, "__spec__", None) is not None:
            spec = loaded.__spec__
        else:
            spec = None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                try:
                    spec = find(fullname, path)
                except (ImportError, ValueError, AttributeError, TypeError):
                    spec = None
                if spec is not None:
                    break
        if spec is None:
            return None
        if depth < len(parts):
            locations = spec.submodule_search_locations
            if locations is None:
                return None  # a plain module has no submodules
            path = list(locations)
    return spec


def _version(dist_name: str) -> str | None:
    dist = distributions.find(dist_name)
    return dist.version if dist is not None else None


def _literal(source: str, names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Module-level ``NAME = ("req", ...)`` assignments in ``source``, without running it."""
    found: dict[str, tuple[str, ...]] = {}
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return found
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if not (isinstance(target, ast.Name) and target.id in names):
                continue
            try:
                evaluated = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                # `(*_instruments, "x")` is not a literal: spell out the starred names.
                evaluated = _starred(value, found)
            if isinstance(evaluated, (tuple, list)) and all(isinstance(r, str) for r in evaluated):
                found[target.id] = tuple(evaluated)
    return found


def _starred(value: ast.expr, known: Mapping[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    if not isinstance(value, (ast.Tuple, ast.List)):
        return None
    items: list[str] = []
    for element in value.elts:
        if isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
            if element.value.id not in known:
                return None
            items.extend(known[element.value.id])
        elif isinstance(element, ast.Constant) and isinstance(element.value, str):
            items.append(element.value)
        else:
            return None
    return tuple(items)


def _declared_in_source(module: str) -> tuple[list[str], list[str]] | None:
    """``_instruments`` (all needed) and ``_instruments_any`` (one needed) of an instrumentor."""
    spec = find_spec_without_import(module)
    if spec is None:
        return None
    files: list[str] = []
    for location in spec.submodule_search_locations or []:
        files.append(os.path.join(location, "package.py"))
    if spec.origin and spec.origin.endswith(".py"):
        files.append(spec.origin)
    for file in files:
        try:
            with open(file, encoding="utf-8") as f:
                source = f.read()
        except OSError:
            continue
        found = _literal(source, ("_instruments", "_instruments_any"))
        if "_instruments" in found:
            every = list(found["_instruments"])
            anyof = list(found.get("_instruments_any", ()))
            # `_instruments_any` repeats `_instruments` as alternatives: then one suffices.
            if anyof and set(every) <= set(anyof):
                every = []
            return every, anyof
    return None


def _declared_in_metadata(dist: distributions.Distribution) -> tuple[list[str], list[str]]:
    """The ``instruments`` and ``instruments-any`` extras of a distribution's metadata."""
    every: list[str] = []
    anyof: list[str] = []
    for line in dist.requires:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None:
            continue
        for extra, bucket in (("instruments", every), ("instruments-any", anyof)):
            if _marker_true(requirement.marker, extra):
                requirement.marker = None
                bucket.append(str(requirement))
                break
    return every, anyof


def _marker_true(marker: Marker, extra: str) -> bool:
    try:
        return marker.evaluate({"extra": extra})
    except Exception:  # an unknown marker variable: not ours to judge
        return False


def _unmet(requirement_text: str) -> str | None:
    """None when the installed distribution satisfies the requirement, else why not."""
    try:
        requirement = Requirement(requirement_text)
    except InvalidRequirement:
        return None  # unreadable: the instrumentor's own check will judge it
    if requirement.marker is not None and not _marker_true(requirement.marker, ""):
        return None
    installed = _version(requirement.name)
    if installed is None:
        return f"{requirement.name} is not installed"
    if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
        return f"{requirement.name} {installed} is installed"
    return None


def _conflict(every: list[str], anyof: list[str]) -> tuple[str, str] | None:
    """(the unmet requirement, why) when the declared versions are not all met."""
    for requirement in every:
        why = _unmet(requirement)
        if why is not None:
            return requirement, why
    if anyof and all(_unmet(requirement) is not None for requirement in anyof):
        return " or ".join(anyof), _unmet(anyof[0]) or ""
    return None


def _instrumentor_module(instrumentor_dist: str) -> str:
    """Its module: `openinference-instrumentation-x-y` -> `openinference.instrumentation.x_y`."""
    suffix = distributions.normalize(instrumentor_dist).removeprefix(
        "openinference-instrumentation-"
    )
    return f"{OI}.{suffix.replace('-', '_')}"


def probe(integration: Integration) -> Finding:
    """Whether ``integration``'s instrumentor would activate when its library is imported."""
    spec = REGISTRY[integration]
    library = next((d for d in spec.dists if distributions.installed(d)), None)
    if library is None:
        return Finding(integration.value, NOT_INSTALLED)
    library_version = _version(library) or "unknown version"
    if find_spec_without_import(spec.module) is None:
        return Finding(
            integration.value,
            f"library not importable ({library} {library_version} is installed, "
            f"but no module {spec.module} is found)",
        )
    instrumentor = distributions.find(spec.instrumentor_dist)
    if instrumentor is None:
        return Finding(integration.value, f"instrumentor missing ({pip_hint(integration)})")
    both = f"{library} {library_version}, {spec.instrumentor_dist} {instrumentor.version}"
    if not spec.checks_versions:
        return Finding(integration.value, f"{WOULD_INSTRUMENT} ({both})")
    declared = _declared_in_source(_instrumentor_module(spec.instrumentor_dist))
    every, anyof = declared if declared is not None else _declared_in_metadata(instrumentor)
    conflict = _conflict(every, anyof)
    if conflict is not None:
        requirement, why = conflict
        return Finding(
            integration.value,
            f"version not supported ({spec.instrumentor_dist} {instrumentor.version} "
            f"instruments {requirement}; {why})",
        )
    return Finding(integration.value, f"{WOULD_INSTRUMENT} ({both})")


def version_advice(integration: Integration) -> str:
    """Why the instrumentor declined the installed library, and what to do, in words."""
    spec = REGISTRY[integration]
    finding = probe(integration)
    why = finding.state.removeprefix("version not supported (").removesuffix(")")
    if why == finding.state:  # the metadata does not show the conflict the instrumentor saw
        why = f"{spec.instrumentor_dist} does not support the installed {spec.dists[0]}"
    return (
        f"{why}. Upgrade {spec.dists[0]}, or install an older {spec.instrumentor_dist} "
        "that supports it; `traceroot-run --check` shows what is installed"
    )


def probe_integrations(requested: str | None) -> dict[Integration, Finding]:
    """Every integration's finding for ``TRACEROOT_INTEGRATIONS=requested``."""
    chosen = parse_requested(requested, "TRACEROOT_INTEGRATIONS")
    findings: dict[Integration, Finding] = {}
    for integration in Integration:
        finding = probe(integration)
        if chosen is not None and integration not in chosen and finding.state != NOT_INSTALLED:
            finding = Finding(integration.value, NOT_REQUESTED)
        findings[integration] = finding
    return findings


def probe_otel_instrumentors(environ: Mapping[str, str]) -> list[Finding]:
    """What the launcher would do with each ``opentelemetry_instrumentor`` entry point."""
    disabled = {
        name.strip()
        for name in environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
        if name.strip()
    }
    findings: list[Finding] = []
    seen: set[str] = set()
    for entry_point in distributions.entry_points(entry_points.ENTRY_POINT_GROUP):
        if entry_point.name in seen:
            continue
        seen.add(entry_point.name)
        findings.append(_probe_entry_point(entry_point, disabled))
    return sorted(findings, key=lambda finding: finding.name)


def _probe_entry_point(entry_point: distributions.EntryPoint, disabled: set[str]) -> Finding:
    name = entry_point.name
    if "*" in disabled or name in disabled:
        return Finding(name, "disabled (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)")
    libraries = entry_points.instrumented_libraries(entry_point)
    if entry_points.covered_by_registry(entry_point, set(libraries)):
        return Finding(name, "left to the LLM integration (one span per call)")
    dist = entry_point.dist
    dist_name = _dist_name(dist)
    installed = [lib for lib in libraries if distributions.installed(lib)]
    if libraries and not installed:
        return Finding(name, f"{NOT_INSTALLED} ({' or '.join(libraries)})")
    every, anyof = _declared_in_metadata(dist)
    conflict = _conflict(every, anyof)
    if conflict is not None:
        requirement, why = conflict
        state = f"version not supported ({dist_name} instruments {requirement}; {why})"
        return Finding(name, state)
    shown = [f"{lib} {_version(lib)}" for lib in installed]
    return Finding(name, f"{WOULD_INSTRUMENT} ({', '.join([*shown, dist_name])})")


def _dist_name(dist: distributions.Distribution) -> str:
    """`name version` of a distribution, from its metadata (else its folder's name)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith("Name:"):
            return f"{line.partition(':')[2].strip()} {dist.version}"
    return os.path.basename(dist.folder).rsplit(".", 1)[0]
