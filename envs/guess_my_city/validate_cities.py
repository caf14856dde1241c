#!/usr/bin/env python3
"""Validate cities.json, the knowledge base of the Guess My City game.

Usage: python3 validate_cities.py [path/to/cities.json]

Standard library only. Prints a summary and exits non-zero (listing every problem) when a hard
requirement fails: schema and allowed values, alias rules, feature rules, coverage (cities,
continents, countries, capitals/coastal mix, population bands, climates), hemisphere/east-west
against reference coordinates, and a few spot checks of well-known facts.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("cities.json")

FIELDS = [
    "city", "aliases", "country", "continent", "hemisphere", "east_west", "coastal", "capital",
    "population_band", "language", "climate", "features",
]
CONTINENTS = {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}
HEMISPHERES = {"northern", "southern"}
EAST_WEST = {"eastern", "western"}
BANDS = ["under 1 million", "1 to 5 million", "5 to 10 million", "over 10 million"]
CLIMATES = [
    "tropical", "arid", "semi-arid", "mediterranean", "humid subtropical", "oceanic",
    "humid continental", "subarctic", "highland",
]
MIN_CITIES, MIN_CONTINENTS, MIN_COUNTRIES = 90, 6, 45

# Approximate (latitude, longitude) of each city centre, used to check hemisphere/east_west.
COORDS = {
    "Tokyo": (35.68, 139.69), "Kyoto": (35.01, 135.77), "Osaka": (34.69, 135.50),
    "Seoul": (37.57, 126.98), "Beijing": (39.90, 116.41), "Shanghai": (31.23, 121.47),
    "Bangkok": (13.76, 100.50), "Hanoi": (21.03, 105.85), "Manila": (14.60, 120.98),
    "Jakarta": (-6.21, 106.85), "Kuala Lumpur": (3.14, 101.69), "Singapore": (1.35, 103.82),
    "New Delhi": (28.61, 77.21), "Mumbai": (19.08, 72.88), "Bengaluru": (12.97, 77.59),
    "Jaipur": (26.91, 75.79), "Karachi": (24.86, 67.01), "Dhaka": (23.81, 90.41),
    "Kathmandu": (27.72, 85.32), "Tehran": (35.69, 51.39), "Dubai": (25.20, 55.27),
    "Abu Dhabi": (24.45, 54.38), "Riyadh": (24.71, 46.68), "Doha": (25.29, 51.53),
    "Taipei": (25.03, 121.57),
    "London": (51.51, -0.13), "Manchester": (53.48, -2.24), "Paris": (48.86, 2.35),
    "Marseille": (43.30, 5.37), "Berlin": (52.52, 13.40), "Munich": (48.14, 11.58),
    "Madrid": (40.42, -3.70), "Barcelona": (41.39, 2.17), "Lisbon": (38.72, -9.14),
    "Rome": (41.90, 12.50), "Venice": (45.44, 12.32), "Naples": (40.85, 14.27),
    "Florence": (43.77, 11.26), "Athens": (37.98, 23.73), "Amsterdam": (52.37, 4.90),
    "Brussels": (50.85, 4.35), "Vienna": (48.21, 16.37), "Prague": (50.08, 14.44),
    "Budapest": (47.50, 19.04), "Warsaw": (52.23, 21.01), "Dublin": (53.35, -6.26),
    "Stockholm": (59.33, 18.07), "Oslo": (59.91, 10.75), "Copenhagen": (55.68, 12.57),
    "Helsinki": (60.17, 24.94), "Reykjavik": (64.15, -21.94), "Moscow": (55.76, 37.62),
    "Saint Petersburg": (59.93, 30.34), "Kyiv": (50.45, 30.52), "Zurich": (47.38, 8.54),
    "Geneva": (46.20, 6.14), "Istanbul": (41.01, 28.98),
    "Cairo": (30.04, 31.24), "Alexandria": (31.20, 29.92), "Lagos": (6.52, 3.38),
    "Nairobi": (-1.29, 36.82), "Addis Ababa": (9.03, 38.74), "Cape Town": (-33.92, 18.42),
    "Johannesburg": (-26.20, 28.05), "Casablanca": (33.57, -7.59), "Marrakesh": (31.63, -8.01),
    "Accra": (5.60, -0.19), "Dakar": (14.72, -17.47), "Kinshasa": (-4.44, 15.27),
    "Dar es Salaam": (-6.79, 39.21), "Tunis": (36.81, 10.18), "Kigali": (-1.95, 30.06),
    "New York City": (40.71, -74.01), "Los Angeles": (34.05, -118.24),
    "Chicago": (41.88, -87.63), "San Francisco": (37.77, -122.42), "Miami": (25.76, -80.19),
    "Washington, D.C.": (38.91, -77.04), "Seattle": (47.61, -122.33),
    "Las Vegas": (36.17, -115.14), "Boston": (42.36, -71.06), "Denver": (39.74, -104.99),
    "Anchorage": (61.22, -149.90), "Toronto": (43.65, -79.38), "Vancouver": (49.28, -123.12),
    "Montreal": (45.50, -73.57), "Ottawa": (45.42, -75.70), "Mexico City": (19.43, -99.13),
    "Guadalajara": (20.66, -103.35), "Cancún": (21.16, -86.85), "Havana": (23.11, -82.37),
    "Panama City": (8.98, -79.52),
    "Rio de Janeiro": (-22.91, -43.17), "São Paulo": (-23.55, -46.63),
    "Brasília": (-15.79, -47.88), "Manaus": (-3.12, -60.02), "Buenos Aires": (-34.60, -58.38),
    "Montevideo": (-34.90, -56.16), "Santiago": (-33.45, -70.67), "Lima": (-12.05, -77.04),
    "Cusco": (-13.53, -71.97), "Bogotá": (4.71, -74.07), "Medellín": (6.24, -75.58),
    "Quito": (-0.18, -78.47), "La Paz": (-16.50, -68.15), "Caracas": (10.48, -66.90),
    "Sydney": (-33.87, 151.21), "Melbourne": (-37.81, 144.96), "Perth": (-31.95, 115.86),
    "Canberra": (-35.28, 149.13), "Auckland": (-36.85, 174.76), "Wellington": (-41.29, 174.78),
}

# Spot checks of well-known facts: city -> {field: expected value}.
SPOT_CHECKS = {
    "Rome": {"coastal": False, "capital": True}, "Madrid": {"coastal": False},
    "Paris": {"coastal": False}, "Moscow": {"coastal": False}, "Beijing": {"coastal": False},
    "New Delhi": {"coastal": False}, "Sydney": {"capital": False},
    "Istanbul": {"capital": False}, "Rio de Janeiro": {"capital": False},
    "New York City": {"capital": False}, "Toronto": {"capital": False},
    "Mumbai": {"capital": False}, "Shanghai": {"capital": False},
    "Montreal": {"language": "French"}, "Barcelona": {"language": "Spanish"},
    "Quito": {"hemisphere": "southern"}, "London": {"east_west": "western"},
    "Accra": {"east_west": "western"}, "Canberra": {"capital": True},
    "Ottawa": {"capital": True}, "Brasília": {"capital": True}, "Dubai": {"capital": False},
    "Tokyo": {"continent": "Asia", "country": "Japan"},
}


def norm(text: str) -> str:
    """Lowercase and turn punctuation into spaces, like the game's matcher."""
    return " ".join(re.sub(r"[^\w\s'-]+", " ", text.lower()).split())


def contains_word(text: str, phrase: str) -> bool:
    """Case-insensitive whole-word occurrence of `phrase` in `text` (punctuation-insensitive)."""
    p = norm(phrase)
    return bool(p) and f" {p} " in f" {norm(text)} "


def name_leak(c: dict) -> bool:
    """The country equals/contains the city's name or an alias (so naming the country names the
    city), or the city's own name contains the country (Mexico City, Panama City)."""
    names = [c["city"], *c["aliases"]]
    return any(contains_word(c["country"], n) for n in names) or contains_word(c["city"], c["country"])


def main(path: Path) -> int:
    errors: list[str] = []

    def err(msg: str) -> None:
        errors.append(msg)

    raw_text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw_text)
    except json.JSONDecodeError as e:
        print(f"FAIL: {path} is not valid JSON: {e}")
        return 1
    if not isinstance(data, list):
        print("FAIL: top level must be a JSON list")
        return 1
    if raw_text.rstrip("\n") != json.dumps(data, indent=2, ensure_ascii=False):
        err("file is not formatted as json.dumps(data, indent=2, ensure_ascii=False)")

    # ---- per-city schema and values
    good = []
    for i, c in enumerate(data):
        where = f"entry {i} ({c.get('city', '?') if isinstance(c, dict) else '?'})"
        if not isinstance(c, dict):
            err(f"{where}: not an object")
            continue
        missing = [f for f in FIELDS if f not in c]
        extra = [f for f in c if f not in FIELDS]
        if missing or extra:
            err(f"{where}: missing fields {missing}, unexpected fields {extra}")
            continue
        for f in ("city", "country", "language"):
            if not isinstance(c[f], str) or not c[f].strip():
                err(f"{where}: '{f}' must be a non-empty string")
        for f, allowed in (("continent", CONTINENTS), ("hemisphere", HEMISPHERES),
                           ("east_west", EAST_WEST), ("population_band", BANDS),
                           ("climate", CLIMATES)):
            if c[f] not in allowed:
                err(f"{where}: {f}={c[f]!r} not in {sorted(allowed)}")
        for f in ("coastal", "capital"):
            if not isinstance(c[f], bool):
                err(f"{where}: '{f}' must be true/false")
        al = c["aliases"]
        if not (isinstance(al, list) and 1 <= len(al) <= 3 and all(isinstance(a, str) for a in al)):
            err(f"{where}: aliases must be a list of 1-3 strings")
        else:
            if any(a != a.lower() or not a.strip() for a in al):
                err(f"{where}: aliases must be non-empty lowercase strings: {al}")
            if isinstance(c["city"], str) and al[0] != c["city"].lower():
                err(f"{where}: first alias {al[0]!r} must be the city name lowercased")
            if len({norm(a) for a in al}) != len(al):
                err(f"{where}: duplicate aliases (after normalising punctuation): {al}")
        ft = c["features"]
        if not (isinstance(ft, list) and 3 <= len(ft) <= 5
                and all(isinstance(x, str) and x.strip() for x in ft)):
            err(f"{where}: features must be a list of 3-5 non-empty strings")
            continue
        if any(len(x) > 120 for x in ft):
            err(f"{where}: features should be short phrases (<= 120 chars)")
        if len(set(ft)) != len(ft):
            err(f"{where}: duplicate features")
        good.append(c)

    if errors:
        return report_failure(errors)

    # ---- uniqueness and cross-city rules
    names = Counter(c["city"] for c in good)
    for n, k in names.items():
        if k > 1:
            err(f"city {n!r} appears {k} times")
    owner: dict[str, str] = {}
    for c in good:
        for a in c["aliases"]:
            key = norm(a)
            if key in owner and owner[key] != c["city"]:
                err(f"alias {a!r} shared by {owner[key]!r} and {c['city']!r}")
            owner.setdefault(key, c["city"])
    for c in good:
        own = [c["city"], *c["aliases"]]
        for feat in c["features"]:
            for n in own:
                if contains_word(feat, n):
                    err(f"{c['city']}: feature {feat!r} contains the city's name/alias {n!r}")
            for key, other in owner.items():
                if other != c["city"] and contains_word(feat, key):
                    err(f"{c['city']}: feature {feat!r} mentions another city's alias "
                        f"{key!r} ({other}); the game would treat it as a guess")
    firsts = Counter(c["features"][0].lower() for c in good)
    for f, k in firsts.items():
        if k > 1:
            err(f"first feature {f!r} is used by {k} cities (must be unique)")

    # ---- facts: hemispheres from reference coordinates, spot checks
    by_name = {c["city"]: c for c in good}
    for c in good:
        if c["city"] not in COORDS:
            err(f"{c['city']}: no reference coordinates in COORDS; add them to check hemispheres")
            continue
        lat, lon = COORDS[c["city"]]
        if c["hemisphere"] != ("northern" if lat >= 0 else "southern"):
            err(f"{c['city']}: hemisphere {c['hemisphere']!r} contradicts latitude {lat}")
        if c["east_west"] != ("eastern" if lon >= 0 else "western"):
            err(f"{c['city']}: east_west {c['east_west']!r} contradicts longitude {lon}")
    for city, expect in SPOT_CHECKS.items():
        if city not in by_name:
            continue
        for f, v in expect.items():
            if by_name[city][f] != v:
                err(f"{city}: {f}={by_name[city][f]!r}, expected {v!r}")

    # ---- coverage
    continents = Counter(c["continent"] for c in good)
    countries = Counter(c["country"] for c in good)
    bands = Counter(c["population_band"] for c in good)
    climates = Counter(c["climate"] for c in good)
    if len(good) < MIN_CITIES:
        err(f"only {len(good)} cities (need >= {MIN_CITIES})")
    if len(continents) < MIN_CONTINENTS:
        err(f"only {len(continents)} continents (need >= {MIN_CONTINENTS})")
    if len(countries) < MIN_COUNTRIES:
        err(f"only {len(countries)} countries (need >= {MIN_COUNTRIES})")
    for f in ("capital", "coastal"):
        vals = {c[f] for c in good}
        if vals != {True, False}:
            err(f"'{f}' must mix true and false, got only {vals}")
    for b in BANDS:
        if not bands[b]:
            err(f"population band {b!r} is never used")
    unused = [x for x in CLIMATES if not climates[x]]
    if len(unused) > 1:
        err(f"climates never used (at most one may be): {unused}")

    # ---- summary
    leaks = [c["city"] for c in good if name_leak(c)]
    key = lambda c: (c["country"], c["coastal"], c["capital"], c["population_band"], c["climate"])
    tuples = Counter(key(c) for c in good)
    sharing = [c["city"] for c in good if tuples[key(c)] > 1]

    print(f"file: {path}")
    print(f"cities: {len(good)}")
    print(f"countries: {len(countries)}")
    print(f"continents ({len(continents)}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(continents.items())))
    print(f"capitals: {sum(c['capital'] for c in good)}, non-capitals: "
          f"{sum(not c['capital'] for c in good)}; coastal: {sum(c['coastal'] for c in good)}, "
          f"inland: {sum(not c['coastal'] for c in good)}")
    print("population bands: " + ", ".join(f"{b} {bands[b]}" for b in BANDS))
    print("climates: " + ", ".join(f"{x} {climates[x]}" for x in CLIMATES))
    print(f"name-leak risk ({len(leaks)}): {', '.join(leaks) if leaks else 'none'}")
    print(f"cities sharing their (country, coastal, capital, population_band, climate) tuple: "
          f"{len(sharing)}" + (f" ({', '.join(sharing)})" if sharing else ""))

    if errors:
        return report_failure(errors)
    print("OK: all checks passed")
    return 0


def report_failure(errors: list[str]) -> int:
    print(f"FAIL: {len(errors)} problem(s):")
    for e in errors:
        print(f"  - {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))
