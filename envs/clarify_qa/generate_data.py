"""Generate the bundled ClarifyQA requests (standard library only).

    python envs/clarify_qa/generate_data.py                   # rewrite the bundled file
    python envs/clarify_qa/generate_data.py --out-dir /tmp/cq --seed 1

Writes `requests.json.gz` (gzip with a zero timestamp, so the same seed gives the same bytes).

Every request comes from a *family*: a template with one slot, a generic filler that leaves the
request ambiguous ("How long does it take to cook {}?" with "rice"), the dimension along which
it is ambiguous ("kind of rice"), and the readings, each with the filler that makes the request
specific ("brown rice"), the phrase a user says to mean it, its gold answer ("45 minutes"),
other accepted spellings of that answer, and a prior weight (how often a user means it). A
family gives one ambiguous request (the generic filler, all readings) and candidate unambiguous
requests (one reading's filler, that reading alone); families with a single reading (a date
such as 25/06/2024 can only be day first) give only the latter. Per domain the script keeps at
most `MAX_AMBIGUOUS` ambiguous requests and about `UNAMBIGUOUS_RATIO` times as many
unambiguous ones, drawn with the seed.

A request's `keywords` are the words of a clarifying question that the rule-based user treats
as being about the request's dimension: the family's keywords ("kind", "type"), the words of
the dimension ("rice") and the distinctive words of each reading's phrase ("brown", "oregon").
"""

from __future__ import annotations

import argparse
import calendar
import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

SEED = 0
HERE = Path(__file__).resolve().parent
REQUESTS_FILE = "requests.json.gz"
MAX_AMBIGUOUS = 60
UNAMBIGUOUS_RATIO = 0.35
STOPWORDS = frozenset(
    ("a", "an", "the", "in", "of", "on", "for", "to", "and", "or", "is", "it", "my", "i", "mean",
     "with", "at", "by", "per", "de", "be", "do", "does", "how", "what", "which", "when", "where",
     "who", "many", "much")
)  # fmt: skip
_PUNCT = re.compile(r"[^\w\s'-]+", re.UNICODE)


@dataclass(frozen=True)
class Reading:
    filler: str
    """Slot text that makes the request mean this reading alone."""
    phrase: str
    """What the user says to mean it ("brown rice")."""
    answer: str
    aliases: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class Family:
    domain: str
    template: str
    generic: str
    dimension: str
    keywords: tuple[str, ...]
    readings: tuple[Reading, ...]


def words(text: str) -> list[str]:
    """The whole words the env's phrase matcher sees (lower case, punctuation dropped)."""
    return _PUNCT.sub(" ", text.lower()).split()


def num(x: float, digits: int = 2) -> str:
    """A number as the answers write it: thousands separators, at most `digits` decimals."""
    text = f"{x:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def R(filler, phrase, answer, weight=1.0, aliases=()):
    return Reading(filler, phrase, answer, tuple(aliases), weight)


def F(domain, template, generic, dimension, keywords, readings):
    return Family(domain, template, generic, dimension, tuple(keywords), tuple(readings))


def numeric(value: str, unit: str, extra: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
    """(answer, aliases) of a number with a unit: "11.36 liters", also "11.36"."""
    bare = value.replace(",", "")
    aliases = [value] + ([bare] if bare != value else [])
    return f"{value} {unit}", tuple(aliases) + extra


# ----------------------------------------------------------------------------------- cooking
# fmt: off
COOK_TIMES = [
    ("How long does it take to cook {}?", "rice", "kind of rice", ["kind", "type", "variety"], [
        ("white rice", "white rice", "18 minutes", 0.6),
        ("brown rice", "brown rice", "45 minutes", 0.3),
        ("wild rice", "wild rice", "50 minutes", 0.1)]),
    ("How long should I boil an egg{}?", "", "doneness", ["soft", "hard", "yolk", "boiled", "runny", "done"], [
        (" for a soft yolk", "a soft-boiled egg", "6 minutes", 0.4),
        (" for a hard yolk", "a hard-boiled egg", "10 minutes", 0.6)]),
    ("How long do I cook {}?", "pasta", "kind of pasta", ["kind", "type", "fresh", "dried", "dry"], [
        ("fresh pasta", "fresh pasta", "3 minutes", 0.3),
        ("dried pasta", "dried pasta", "10 minutes", 0.7)]),
    ("How long should I roast {}?", "chicken", "cut of chicken", ["cut", "part", "whole", "pieces"], [
        ("a whole chicken", "a whole chicken", "90 minutes", 0.5, ("1.5 hours",)),
        ("chicken breasts", "chicken breasts", "25 minutes", 0.3),
        ("chicken thighs", "chicken thighs", "35 minutes", 0.2)]),
    ("How long should I steep {}?", "tea", "kind of tea", ["kind", "type", "variety"], [
        ("green tea", "green tea", "2 minutes", 0.35),
        ("black tea", "black tea", "4 minutes", 0.45),
        ("herbal tea", "herbal tea", "6 minutes", 0.2)]),
    ("How long do I cook {}?", "oats", "kind of oats", ["kind", "type", "oatmeal"], [
        ("rolled oats", "rolled oats", "5 minutes", 0.5),
        ("steel-cut oats", "steel-cut oats", "25 minutes", 0.3),
        ("instant oats", "instant oats", "1 minute", 0.2)]),
    ("How long do I simmer {}?", "lentils", "kind of lentils", ["kind", "type", "color", "colour"], [
        ("red lentils", "red lentils", "15 minutes", 0.55),
        ("green lentils", "green lentils", "30 minutes", 0.45)]),
    ("How long do I boil {}?", "potatoes", "how the potatoes are cut", ["cut", "whole", "size", "pieces", "cubed"], [
        ("whole potatoes", "whole potatoes", "25 minutes", 0.55),
        ("cubed potatoes", "cubed potatoes", "12 minutes", 0.45)]),
    ("How long should I cook {}?", "salmon", "cooking method", ["method", "oven", "pan", "grill", "baked", "bake", "cook"], [
        ("salmon in the oven", "baked salmon", "15 minutes", 0.45),
        ("salmon in a pan", "pan-seared salmon", "8 minutes", 0.35),
        ("salmon on the grill", "grilled salmon", "10 minutes", 0.2)]),
    ("How long should I cook a steak{}?", "", "doneness", ["doneness", "done", "cooked", "pink"], [
        (" rare", "a rare steak", "2 minutes per side", 0.25),
        (" medium", "a medium steak", "4 minutes per side", 0.5),
        (" well done", "a well-done steak", "6 minutes per side", 0.25)]),
    ("What internal temperature should {} reach?", "cooked meat", "kind of meat", ["kind", "type", "meat"], [
        ("cooked chicken", "chicken", "165 degrees Fahrenheit", 0.4, ("165", "165 F")),
        ("cooked pork", "pork", "145 degrees Fahrenheit", 0.3, ("145", "145 F")),
        ("cooked ground beef", "ground beef", "160 degrees Fahrenheit", 0.3, ("160", "160 F"))]),
    ("How long should I brew {}?", "coffee", "brewing method", ["method", "brew", "maker", "machine"], [
        ("coffee in a French press", "French press coffee", "4 minutes", 0.4),
        ("an espresso", "espresso", "30 seconds", 0.35),
        ("pour-over coffee", "pour-over coffee", "3 minutes", 0.25)]),
    ("How much water do I need for one cup of {}?", "rice", "kind of rice", ["kind", "type", "variety"], [
        ("white rice", "white rice", "2 cups", 0.6),
        ("brown rice", "brown rice", "2.5 cups", 0.4, ("2 1/2 cups", "2 and a half cups"))]),
    ("How long do I bake {}?", "a potato", "kind of potato", ["kind", "type", "variety"], [
        ("a russet potato", "a russet potato", "60 minutes", 0.6, ("1 hour",)),
        ("a sweet potato", "a sweet potato", "45 minutes", 0.4)]),
]
OVEN = [  # dish, Fahrenheit, Celsius (the usual recipe conversions)
    ("bread", 450, 230), ("pizza", 500, 260), ("cookies", 350, 180), ("a cake", 350, 180),
    ("muffins", 375, 190), ("a roast chicken", 425, 220), ("roasted vegetables", 425, 220),
    ("baked salmon", 400, 200), ("lasagna", 375, 190), ("baked potatoes", 400, 200),
    ("brownies", 350, 180), ("banana bread", 350, 180),
]
COOK_SINGLE = [
    ("How long do I cook quinoa?", "quinoa", "15 minutes"),
    ("How long do I boil corn on the cob?", "corn on the cob", "5 minutes"),
    ("How long should I blanch green beans?", "green beans", "3 minutes"),
    ("How long do I microwave a bag of popcorn?", "popcorn", "3 minutes"),
]
# fmt: on
SCALE_KEYWORDS = ("scale", "unit", "units", "celsius", "fahrenheit", "degrees", "metric")


def cooking() -> list[Family]:
    fams = []
    for template, generic, dim, kws, readings in COOK_TIMES:
        rs = [R(f, p, a, w, *extra) for f, p, a, w, *extra in readings]
        fams.append(F("cooking", template, generic, dim, kws, rs))
    for dish, fahrenheit, celsius in OVEN:
        fams.append(
            F(
                "cooking",
                f"What oven temperature should I use for {dish}{{}}?",
                "",
                "temperature scale",
                SCALE_KEYWORDS,
                [
                    _temp_reading(
                        " in Fahrenheit", "degrees Fahrenheit", fahrenheit, "Fahrenheit", "F", 0.6
                    ),
                    _temp_reading(" in Celsius", "degrees Celsius", celsius, "Celsius", "C", 0.4),
                ],
            )
        )
    for text, phrase, answer in COOK_SINGLE:
        fams.append(
            F("cooking", text + "{}", "", "dish", ["kind", "type"], [R("", phrase, answer)])
        )
    return fams


def _temp(value: float, scale: str, letter: str) -> tuple[str, tuple[str, ...]]:
    v = num(value, 2)
    return f"{v} degrees {scale}", (v, f"{v} {letter}", f"{v} °{letter}", f"{v} degrees")


def _temp_reading(filler, phrase, value, scale, letter, weight):
    answer, aliases = _temp(value, scale, letter)
    return Reading(filler, phrase, answer, aliases, weight)


# ------------------------------------------------------------------------------------- units
# fmt: off
UNITS = [  # target unit, generic unit, dimension, [(filler, amount in target units, weight)]
    ("liters", "gallons", "kind of gallon", [("US gallons", 3.785411784, 0.65), ("imperial gallons", 4.54609, 0.35)]),
    ("milliliters", "pints", "kind of pint", [("US pints", 473.176473, 0.6), ("imperial pints", 568.26125, 0.4)]),
    ("liters", "quarts", "kind of quart", [("US quarts", 0.946352946, 0.7), ("imperial quarts", 1.1365225, 0.3)]),
    ("milliliters", "fluid ounces", "kind of fluid ounce", [("US fluid ounces", 29.5735295625, 0.65), ("imperial fluid ounces", 28.4130625, 0.35)]),
    ("milliliters", "cups", "kind of cup", [("US cups", 236.5882365, 0.6), ("metric cups", 250.0, 0.4)]),
    ("kilograms", "tons", "kind of ton", [("short tons", 907.18474, 0.45), ("metric tons", 1000.0, 0.4), ("long tons", 1016.0469088, 0.15)]),
    ("kilometers", "miles", "kind of mile", [("statute miles", 1.609344, 0.75), ("nautical miles", 1.852, 0.25)]),
    ("grams", "ounces", "kind of ounce", [("avoirdupois ounces", 28.349523125, 0.8), ("troy ounces", 31.1034768, 0.2)]),
    ("milliliters", "tablespoons", "kind of tablespoon", [("US tablespoons", 14.78676478125, 0.55), ("metric tablespoons", 15.0, 0.3), ("Australian tablespoons", 20.0, 0.15)]),
    ("grams", "pounds", "kind of pound", [("avoirdupois pounds", 453.59237, 0.85), ("troy pounds", 373.2417216, 0.15)]),
    ("watts", "horsepower", "kind of horsepower", [("mechanical horsepower", 745.69987, 0.6), ("metric horsepower", 735.49875, 0.4)]),
    ("joules", "calories", "kind of calorie", [("small calories", 4.184, 0.4), ("food calories (kilocalories)", 4184.0, 0.6)]),
]
QUANTITIES = (2, 3, 4, 5, 6, 8, 10, 12, 20, 50)
UNIT_KEYWORDS = ("kind", "type", "unit", "units", "system", "us", "american", "imperial", "british", "metric")
# fmt: on


def units() -> list[Family]:
    fams = []
    for target, generic, dim, readings in UNITS:
        for q in QUANTITIES:
            rs = []
            for filler, amount, weight in readings:
                answer, aliases = numeric(num(q * amount), target)
                rs.append(Reading(filler, filler, answer, aliases, weight))
            fams.append(
                F("units", f"How many {target} are in {q} {{}}?", generic, dim, UNIT_KEYWORDS, rs)
            )
    return fams


# ------------------------------------------------------------------------------- temperature
def temperature() -> list[Family]:
    fams = []
    for n in range(0, 105, 5):
        c_to_f = n * 9 / 5 + 32
        f_to_c = (n - 32) * 5 / 9
        fams.append(
            F(
                "temperature",
                f"What is {n} degrees{{}} in the other temperature scale?",
                "",
                "temperature scale",
                SCALE_KEYWORDS,
                [
                    _temp_reading(
                        " Celsius",
                        f"{n} degrees Celsius",
                        round(c_to_f, 1),
                        "Fahrenheit",
                        "F",
                        0.55,
                    ),
                    _temp_reading(
                        " Fahrenheit",
                        f"{n} degrees Fahrenheit",
                        round(f_to_c, 1),
                        "Celsius",
                        "C",
                        0.45,
                    ),
                ],
            )
        )
    for k in (0, 100, 200, 250, 273.15, 300, 310, 373.15, 500, 1000):
        fams.append(
            F(
                "temperature",
                f"What is {num(k)} kelvin in degrees Celsius?{{}}",
                "",
                "temperature scale",
                SCALE_KEYWORDS,
                [_temp_reading("", "degrees Celsius", round(k - 273.15, 2), "Celsius", "C", 1.0)],
            )
        )
    return fams


# ----------------------------------------------------------------------------------- science
# fmt: off
SCIENCE = [  # property, [(unit phrase, answer value, weight)]
    ("the boiling point of water", [("degrees Celsius", "100", 0.5), ("degrees Fahrenheit", "212", 0.35), ("kelvin", "373.15", 0.15)]),
    ("the freezing point of water", [("degrees Celsius", "0", 0.5), ("degrees Fahrenheit", "32", 0.35), ("kelvin", "273.15", 0.15)]),
    ("normal human body temperature", [("degrees Celsius", "37", 0.55), ("degrees Fahrenheit", "98.6", 0.45)]),
    ("absolute zero", [("degrees Celsius", "-273.15", 0.6), ("degrees Fahrenheit", "-459.67", 0.4)]),
    ("the boiling point of ethanol", [("degrees Celsius", "78.37", 0.6), ("degrees Fahrenheit", "173.07", 0.4)]),
    ("the speed of light", [("kilometers per second", "299,792", 0.6), ("miles per second", "186,282", 0.4)]),
    ("the speed of sound in air", [("meters per second", "343", 0.6), ("miles per hour", "767", 0.4)]),
    ("the height of Mount Everest", [("meters", "8,849", 0.6), ("feet", "29,032", 0.4)]),
    ("the average distance from the Earth to the Moon", [("kilometers", "384,400", 0.6), ("miles", "238,855", 0.4)]),
    ("the circumference of the Earth at the equator", [("kilometers", "40,075", 0.6), ("miles", "24,901", 0.4)]),
    ("the acceleration due to gravity on Earth", [("meters per second squared", "9.81", 0.65), ("feet per second squared", "32.2", 0.35)]),
    ("atmospheric pressure at sea level", [("kilopascals", "101.325", 0.45), ("pounds per square inch", "14.7", 0.35), ("millimeters of mercury", "760", 0.2)]),
    ("the density of water", [("grams per cubic centimeter", "1", 0.65), ("pounds per cubic foot", "62.4", 0.35)]),
]
MEASURE_KEYWORDS = ("unit", "units", "metric", "imperial", "measure", "measurement", "system", "scale")
# fmt: on


def science() -> list[Family]:
    fams = []
    for prop, readings in SCIENCE:
        rs = [
            Reading(f" in {unit}", unit, *numeric(value, unit), weight=w)
            for unit, value, w in readings
        ]
        fams.append(F("science", f"What is {prop}{{}}?", "", "unit", MEASURE_KEYWORDS, rs))
    return fams


# ------------------------------------------------------------------------------------- dates
MONTHS = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)  # not calendar.month_name: locale
DATE_KEYWORDS = (
    "format",
    "order",
    "month",
    "day",
    "american",
    "us",
    "european",
    "british",
    "first",
)


def _date(year: int, month: int, day: int) -> tuple[str, tuple[str, ...]]:
    name = MONTHS[month]
    return f"{name} {day}, {year}", (f"{day} {name} {year}", f"{year}-{month:02d}-{day:02d}")


def dates(rng: random.Random) -> list[Family]:
    fams = []
    for year in (2023, 2024, 2025):
        for a in range(1, 13):
            for b in range(1, 29):
                text = f"What date is {a:02d}/{b:02d}/{year}?{{}}"
                if a == b:
                    rs = [Reading("", "either format", *_date(year, a, a))]
                elif b <= 12:
                    rs = [
                        Reading("", "the month-first format", *_date(year, a, b), 0.55),
                        Reading("", "the day-first format", *_date(year, b, a), 0.45),
                    ]
                else:  # only one reading: a day-first date with a day > 12 cannot be month first
                    rs = [Reading("", "the month-first format", *_date(year, a, b))]
                    if rng.random() < 0.5:
                        text = f"What date is {b:02d}/{a:02d}/{year}?{{}}"
                        rs = [Reading("", "the day-first format", *_date(year, a, b))]
                fams.append(F("dates", text, "", "date format", DATE_KEYWORDS, rs))
    return fams


# -------------------------------------------------------------------------------- data sizes
DATA_KEYWORDS = (
    "decimal",
    "binary",
    "si",
    "iec",
    "definition",
    "base",
    "1000",
    "1024",
    "power",
    "powers",
    "kind",
    "convention",
)


def data_sizes() -> list[Family]:
    fams = []
    prefixes = [("kilo", "kibi", 1), ("mega", "mebi", 2), ("giga", "gibi", 3)]
    for si, iec, k in prefixes:
        for q in (2, 4, 8, 10, 16, 32, 64, 100, 256, 512):
            rs = [
                Reading(
                    f"SI {si}bytes",
                    f"decimal (SI) {si}bytes",
                    *numeric(num(q * 1000**k), "bytes"),
                    0.55,
                ),
                Reading(
                    f"{iec}bytes",
                    f"binary {si}bytes ({iec}bytes)",
                    *numeric(num(q * 1024**k), "bytes"),
                    0.45,
                ),
            ]
            fams.append(
                F(
                    "data_sizes",
                    f"How many bytes are in {q} {{}}?",
                    f"{si}bytes",
                    "decimal or binary prefixes",
                    DATA_KEYWORDS,
                    rs,
                )
            )
    for (small, small_iec, _), (big, big_iec, _) in zip(prefixes, prefixes[1:], strict=False):
        fams.append(
            F(
                "data_sizes",
                f"How many {small}bytes are in a {{}}?",
                f"{big}byte",
                "decimal or binary prefixes",
                DATA_KEYWORDS,
                [
                    Reading(
                        f"SI {big}byte",
                        "decimal (SI) prefixes",
                        *numeric("1,000", f"{small}bytes"),
                        0.55,
                    ),
                    Reading(
                        f"{big_iec}byte",
                        "binary prefixes",
                        *numeric("1,024", f"{small}bytes", (f"1,024 {small_iec}bytes",)),
                        0.45,
                    ),
                ],
            )
        )
    return fams


# -------------------------------------------------------------------------------------- time
TIME_KEYWORDS = (
    "morning",
    "evening",
    "afternoon",
    "night",
    "am",
    "pm",
    "noon",
    "midnight",
    "day",
    "time",
)


def time_of_day() -> list[Family]:
    fams = []
    for h in range(1, 13):
        for mm in ("00", "15", "30", "45"):
            am_hour, pm_hour = (0, 12) if h == 12 else (h, h + 12)
            am = f"{am_hour:02d}:{mm}"
            pm = f"{pm_hour:02d}:{mm}"
            am_w = 0.55 if 6 <= h <= 11 else 0.4
            fams.append(
                F(
                    "time",
                    f"What is {h}:{mm}{{}} in 24-hour time?",
                    "",
                    "a.m. or p.m.",
                    TIME_KEYWORDS,
                    [
                        Reading(
                            " a.m.",
                            f"{h}:{mm} a.m.",
                            am,
                            (am.lstrip("0") or am, am.replace(":", "")),
                            am_w,
                        ),
                        Reading(" p.m.", f"{h}:{mm} p.m.", pm, (pm.replace(":", ""),), 1 - am_w),
                    ],
                )
            )
    return fams


# ----------------------------------------------------------------------------------- numbers
# fmt: off
NUMBERS = [
    ("How many zeros are in a billion{}?", "short or long scale", ["scale", "short", "long", "us", "american", "british", "european"], [
        (" on the short scale", "the short scale", "9", 0.8, ("nine",)),
        (" on the long scale", "the long scale", "12", 0.2, ("twelve",))]),
    ("How many zeros are in a trillion{}?", "short or long scale", ["scale", "short", "long", "us", "american", "british", "european"], [
        (" on the short scale", "the short scale", "12", 0.8, ("twelve",)),
        (" on the long scale", "the long scale", "18", 0.2, ("eighteen",))]),
    ("How do you write one billion in digits{}?", "short or long scale", ["scale", "short", "long", "us", "american", "british", "european"], [
        (" on the short scale", "the short scale", "1,000,000,000", 0.8),
        (" on the long scale", "the long scale", "1,000,000,000,000", 0.2)]),
    ("How many days are in a year{}?", "leap year or not", ["leap", "common", "normal", "regular", "kind"], [
        (" that is not a leap year", "a common year", "365 days", 0.75, ("365",)),
        (" that is a leap year", "a leap year", "366 days", 0.25, ("366",))]),
    ("How many days are in February{}?", "leap year or not", ["leap", "common", "normal", "regular", "year"], [
        (" in a common year", "a common year", "28 days", 0.75, ("28",)),
        (" in a leap year", "a leap year", "29 days", 0.25, ("29",))]),
    ("How many seconds are in a year{}?", "leap year or not", ["leap", "common", "normal", "regular", "kind"], [
        (" that is not a leap year", "a common year", "31,536,000 seconds", 0.75, ("31,536,000", "31536000")),
        (" that is a leap year", "a leap year", "31,622,400 seconds", 0.25, ("31,622,400", "31622400"))]),
    ("How many hours are in a year{}?", "leap year or not", ["leap", "common", "normal", "regular", "kind"], [
        (" that is not a leap year", "a common year", "8,760 hours", 0.75, ("8,760", "8760")),
        (" that is a leap year", "a leap year", "8,784 hours", 0.25, ("8,784", "8784"))]),
    ("How many rolls are in a dozen{}?", "kind of dozen", ["kind", "baker's", "bakers", "regular", "standard"], [
        ("", "a regular dozen", "12", 0.8, ("twelve", "12 rolls")),
        (" from a baker", "a baker's dozen", "13", 0.2, ("thirteen", "13 rolls"))]),
]
# fmt: on


def numbers() -> list[Family]:
    fams = []
    for template, dim, kws, readings in NUMBERS:
        rs = [R(f, p, a, w, *extra) for f, p, a, w, *extra in readings]
        fams.append(F("numbers", template, "", dim, kws, rs))
    for year in range(2001, 2031):
        days = 29 if calendar.isleap(year) else 28
        fams.append(
            F(
                "numbers",
                f"How many days are in February {year}?{{}}",
                "",
                "year",
                ["year"],
                [R("", f"February {year}", f"{days} days", 1.0, (str(days),))],
            )
        )
    return fams


# ------------------------------------------------------------------------------------ sports
# fmt: off
SPORTS = [
    ("How long is a {} game?", "football", "kind of football", ["kind", "type", "code", "soccer", "american", "rules", "nfl"], [
        ("American football", "American football", "60 minutes", 0.45, ("1 hour", "four 15-minute quarters")),
        ("soccer", "soccer", "90 minutes", 0.4, ("two 45-minute halves",)),
        ("Australian rules football", "Australian rules football", "80 minutes", 0.15, ("four 20-minute quarters",))]),
    ("How many players does a {} team have on the field?", "football", "kind of football", ["kind", "type", "code", "soccer", "american", "rules", "nfl"], [
        ("American football", "American football", "11 players", 0.45, ("11", "eleven")),
        ("soccer", "soccer", "11 players", 0.4, ("11", "eleven")),
        ("Australian rules football", "Australian rules football", "18 players", 0.15, ("18", "eighteen"))]),
    ("How long is a half in {}?", "football", "kind of football", ["kind", "type", "code", "soccer", "american", "nfl"], [
        ("soccer", "soccer", "45 minutes", 0.55),
        ("American football", "American football", "30 minutes", 0.45)]),
    ("How many players does each side have in {}?", "hockey", "kind of hockey", ["kind", "type", "ice", "field"], [
        ("ice hockey", "ice hockey", "6 players", 0.6, ("6", "six")),
        ("field hockey", "field hockey", "11 players", 0.4, ("11", "eleven"))]),
    ("How many periods are in a {} game?", "hockey", "kind of hockey", ["kind", "type", "ice", "field"], [
        ("ice hockey", "ice hockey", "3 periods", 0.6, ("3", "three")),
        ("field hockey", "field hockey", "4 quarters", 0.4, ("4", "four"))]),
    ("How long is a quarter in basketball{}?", "", "league rules", ["league", "rules", "nba", "fiba", "international", "professional"], [
        (" in the NBA", "the NBA", "12 minutes", 0.6),
        (" under FIBA rules", "FIBA rules", "10 minutes", 0.4)]),
    ("How long is a basketball game{}?", "", "league rules", ["league", "rules", "nba", "fiba", "international", "professional"], [
        (" in the NBA", "the NBA", "48 minutes", 0.6),
        (" under FIBA rules", "FIBA rules", "40 minutes", 0.4)]),
    ("How long is a {} match?", "cricket", "cricket format", ["format", "kind", "type", "test", "odi", "t20", "twenty20"], [
        ("Test cricket", "Test cricket", "5 days", 0.3, ("five days",)),
        ("One Day International cricket", "a One Day International", "50 overs per side", 0.4, ("50 overs",)),
        ("Twenty20 cricket", "Twenty20", "20 overs per side", 0.3, ("20 overs",))]),
    ("How many sets are in a tennis match{}?", "", "kind of match", ["kind", "type", "grand", "slam", "tournament", "men's", "tour"], [
        (" at a men's Grand Slam", "a men's Grand Slam match", "best of 5 sets", 0.4, ("5 sets", "five sets")),
        (" on the regular tour", "a regular tour match", "best of 3 sets", 0.6, ("3 sets", "three sets"))]),
    ("How long is a competition swimming pool{}?", "", "pool course", ["course", "long", "short", "olympic", "kind", "type"], [
        (" for long course", "a long course pool", "50 meters", 0.6, ("50 m", "50")),
        (" for short course", "a short course pool", "25 meters", 0.4, ("25 m", "25"))]),
    ("How far is a marathon{}?", "", "unit", MEASURE_KEYWORDS + ("kilometers", "miles", "km"), [
        (" in kilometers", "kilometers", "42.195 kilometers", 0.55, ("42.195", "42.195 km")),
        (" in miles", "miles", "26.2 miles", 0.45, ("26.2",))]),
    ("How far is a half marathon{}?", "", "unit", MEASURE_KEYWORDS + ("kilometers", "miles", "km"), [
        (" in kilometers", "kilometers", "21.1 kilometers", 0.55, ("21.1", "21.1 km", "21.0975 kilometers")),
        (" in miles", "miles", "13.1 miles", 0.45, ("13.1",))]),
    ("How many innings are in a game of {}?", "ball", "which sport", ["sport", "baseball", "softball", "kind"], [
        ("baseball", "baseball", "9 innings", 0.7, ("9", "nine")),
        ("softball", "softball", "7 innings", 0.3, ("7", "seven"))]),
    ("How long is a {} match?", "rugby", "kind of rugby", ["kind", "type", "code", "union", "sevens", "league"], [
        ("rugby union", "rugby union", "80 minutes", 0.75),
        ("rugby sevens", "rugby sevens", "14 minutes", 0.25)]),
    ("How many points is a try worth in {}?", "rugby", "kind of rugby", ["kind", "type", "code", "union", "league"], [
        ("rugby union", "rugby union", "5 points", 0.6, ("5", "five")),
        ("rugby league", "rugby league", "4 points", 0.4, ("4", "four"))]),
    ("How many players are on a {} team on the field?", "rugby", "kind of rugby", ["kind", "type", "code", "union", "sevens", "league"], [
        ("rugby union", "rugby union", "15 players", 0.55, ("15", "fifteen")),
        ("rugby league", "rugby league", "13 players", 0.3, ("13", "thirteen")),
        ("rugby sevens", "rugby sevens", "7 players", 0.15, ("7", "seven"))]),
    ("How many points is a field goal worth in {}?", "a game", "which sport", ["sport", "basketball", "football", "kind"], [
        ("basketball", "basketball", "2 points", 0.5, ("2", "two")),
        ("American football", "American football", "3 points", 0.5, ("3", "three"))]),
]
SPORTS_SINGLE = [
    ("How many holes are on a standard golf course?", "golf", "18 holes", ("18",)),
    ("How many players are on a volleyball team on the court?", "volleyball", "6 players", ("6",)),
    ("How many points is a touchdown worth?", "American football", "6 points", ("6",)),
    ("How high is a basketball hoop?", "basketball", "10 feet", ("10 ft",)),
]
# fmt: on


def sports() -> list[Family]:
    fams = []
    for template, generic, dim, kws, readings in SPORTS:
        rs = [R(f, p, a, w, *extra) for f, p, a, w, *extra in readings]
        fams.append(F("sports", template, generic, dim, kws, rs))
    for text, phrase, answer, aliases in SPORTS_SINGLE:
        fams.append(
            F("sports", text + "{}", "", "sport", ["sport"], [R("", phrase, answer, 1.0, aliases)])
        )
    return fams


# --------------------------------------------------------------------------------- geography
# fmt: off
PLACES = [  # name, [(where, country, time zone, weight)]
    ("Portland", [("Oregon", "United States", "Pacific Time", 0.65), ("Maine", "United States", "Eastern Time", 0.35)]),
    ("Paris", [("France", "France", "Central European Time", 0.9), ("Texas", "United States", "Central Time", 0.1)]),
    ("Birmingham", [("England", "United Kingdom", "Greenwich Mean Time", 0.6), ("Alabama", "United States", "Central Time", 0.4)]),
    ("London", [("England", "United Kingdom", "Greenwich Mean Time", 0.9), ("Ontario", "Canada", "Eastern Time", 0.1)]),
    ("Perth", [("Western Australia", "Australia", "Australian Western Standard Time", 0.7), ("Scotland", "United Kingdom", "Greenwich Mean Time", 0.3)]),
    ("Cambridge", [("England", "United Kingdom", "Greenwich Mean Time", 0.55), ("Massachusetts", "United States", "Eastern Time", 0.45)]),
    ("Dublin", [("Ireland", "Ireland", "Greenwich Mean Time", 0.8), ("Ohio", "United States", "Eastern Time", 0.2)]),
    ("Sydney", [("New South Wales", "Australia", "Australian Eastern Standard Time", 0.9), ("Nova Scotia", "Canada", "Atlantic Time", 0.1)]),
    ("Columbia", [("South Carolina", "United States", "Eastern Time", 0.55), ("Missouri", "United States", "Central Time", 0.45)]),
    ("Springfield", [("Illinois", "United States", "Central Time", 0.4), ("Massachusetts", "United States", "Eastern Time", 0.35), ("Missouri", "United States", "Central Time", 0.25)]),
    ("Alexandria", [("Egypt", "Egypt", "Eastern European Time", 0.6), ("Virginia", "United States", "Eastern Time", 0.4)]),
    ("Athens", [("Greece", "Greece", "Eastern European Time", 0.8), ("Georgia", "United States", "Eastern Time", 0.2)]),
    ("Santiago", [("Chile", "Chile", "Chile Standard Time", 0.7), ("Galicia", "Spain", "Central European Time", 0.3)]),
    ("Córdoba", [("Argentina", "Argentina", "Argentina Time", 0.55), ("Andalusia", "Spain", "Central European Time", 0.45)]),
    ("Valencia", [("Spain", "Spain", "Central European Time", 0.6), ("Venezuela", "Venezuela", "Venezuelan Standard Time", 0.4)]),
    ("Hyderabad", [("India", "India", "India Standard Time", 0.7), ("Pakistan", "Pakistan", "Pakistan Standard Time", 0.3)]),
    ("San Jose", [("California", "United States", "Pacific Time", 0.6), ("Costa Rica", "Costa Rica", "Central Standard Time", 0.4)]),
    ("Manchester", [("England", "United Kingdom", "Greenwich Mean Time", 0.8), ("New Hampshire", "United States", "Eastern Time", 0.2)]),
    ("Newcastle", [("England", "United Kingdom", "Greenwich Mean Time", 0.6), ("New South Wales", "Australia", "Australian Eastern Standard Time", 0.4)]),
    ("Toledo", [("Ohio", "United States", "Eastern Time", 0.55), ("Spain", "Spain", "Central European Time", 0.45)]),
    ("Granada", [("Spain", "Spain", "Central European Time", 0.7), ("Nicaragua", "Nicaragua", "Central Standard Time", 0.3)]),
    ("Victoria", [("British Columbia", "Canada", "Pacific Time", 0.7), ("Seychelles", "Seychelles", "Seychelles Time", 0.3)]),
    ("Kingston", [("Jamaica", "Jamaica", "Eastern Standard Time", 0.6), ("Ontario", "Canada", "Eastern Time", 0.4)]),
    ("Hamilton", [("Ontario", "Canada", "Eastern Time", 0.45), ("New Zealand", "New Zealand", "New Zealand Standard Time", 0.35), ("Bermuda", "Bermuda", "Atlantic Time", 0.2)]),
    ("Richmond", [("Virginia", "United States", "Eastern Time", 0.6), ("British Columbia", "Canada", "Pacific Time", 0.25), ("London", "United Kingdom", "Greenwich Mean Time", 0.15)]),
    ("Salem", [("Oregon", "United States", "Pacific Time", 0.4), ("Massachusetts", "United States", "Eastern Time", 0.35), ("Tamil Nadu", "India", "India Standard Time", 0.25)]),
    ("Melbourne", [("Victoria, Australia", "Australia", "Australian Eastern Standard Time", 0.85), ("Florida", "United States", "Eastern Time", 0.15)]),
    ("Florence", [("Italy", "Italy", "Central European Time", 0.8), ("South Carolina", "United States", "Eastern Time", 0.2)]),
]
CAPITALS = [  # name, [(phrase, capital, weight)]
    ("Georgia", [("the US state of Georgia", "Atlanta", 0.55), ("the country Georgia", "Tbilisi", 0.45)]),
    ("Congo", [("the Democratic Republic of the Congo", "Kinshasa", 0.6), ("the Republic of the Congo", "Brazzaville", 0.4)]),
    ("Korea", [("South Korea", "Seoul", 0.7), ("North Korea", "Pyongyang", 0.3)]),
    ("Sudan", [("Sudan", "Khartoum", 0.7), ("South Sudan", "Juba", 0.3)]),
    ("Samoa", [("the independent state of Samoa", "Apia", 0.65), ("American Samoa", "Pago Pago", 0.35)]),
    ("Virginia", [("Virginia", "Richmond", 0.75), ("West Virginia", "Charleston", 0.25)]),
    ("Carolina", [("North Carolina", "Raleigh", 0.55), ("South Carolina", "Columbia", 0.45)]),
    ("Dakota", [("North Dakota", "Bismarck", 0.55), ("South Dakota", "Pierre", 0.45)]),
    ("Guinea", [("Guinea", "Conakry", 0.5), ("Guinea-Bissau", "Bissau", 0.2), ("Equatorial Guinea", "Malabo", 0.15), ("Papua New Guinea", "Port Moresby", 0.15)]),
    ("Dominica", [("Dominica", "Roseau", 0.6), ("the Dominican Republic", "Santo Domingo", 0.4)]),
    ("Ireland", [("the Republic of Ireland", "Dublin", 0.8), ("Northern Ireland", "Belfast", 0.2)]),
    ("Mexico", [("the country Mexico", "Mexico City", 0.85), ("the State of Mexico", "Toluca", 0.15)]),
    ("Macedonia", [("North Macedonia", "Skopje", 0.7), ("the Greek region of Macedonia", "Thessaloniki", 0.3)]),
    ("Luxembourg", [("the country Luxembourg", "Luxembourg City", 0.75), ("the Belgian province of Luxembourg", "Arlon", 0.25)]),
]
# fmt: on
PLACE_KEYWORDS = ("which", "where", "state", "country", "province", "region", "one")


def _place_name(name: str, where: str) -> str:
    return f"{name}, {where}"


def geography() -> list[Family]:
    fams = []
    for name, readings in PLACES:
        countries = {c for _, c, _, _ in readings}
        zones = {z for _, _, z, _ in readings}
        if len(countries) > 1:
            rs = [R(_place_name(name, w), _place_name(name, w), c, wt) for w, c, _, wt in readings]
            fams.append(
                F("geography", "Which country is {} in?", name, f"which {name}", PLACE_KEYWORDS, rs)
            )
        if len(zones) > 1:
            rs = [R(_place_name(name, w), _place_name(name, w), z, wt) for w, _, z, wt in readings]
            fams.append(
                F(
                    "geography",
                    "What time zone is {} in?",
                    name,
                    f"which {name}",
                    PLACE_KEYWORDS,
                    rs,
                )
            )
    for name, readings in CAPITALS:
        rs = [R(p, p, c, w) for p, c, w in readings]
        fams.append(
            F("geography", "What is the capital of {}?", name, f"which {name}", PLACE_KEYWORDS, rs)
        )
    return fams


# ------------------------------------------------------------------------------------ travel
# fmt: off
AIRPORTS = [  # city, [(filler, phrase, code, weight)]
    ("London", [("London Heathrow", "Heathrow", "LHR", 0.5), ("London Gatwick", "Gatwick", "LGW", 0.3), ("London Stansted", "Stansted", "STN", 0.2)]),
    ("Paris", [("Paris Charles de Gaulle", "Charles de Gaulle", "CDG", 0.7), ("Paris Orly", "Orly", "ORY", 0.3)]),
    ("New York", [("New York JFK", "JFK", "JFK", 0.5), ("New York LaGuardia", "LaGuardia", "LGA", 0.25), ("Newark, New Jersey", "Newark", "EWR", 0.25)]),
    ("Tokyo", [("Tokyo Haneda", "Haneda", "HND", 0.55), ("Tokyo Narita", "Narita", "NRT", 0.45)]),
    ("Chicago", [("Chicago O'Hare", "O'Hare", "ORD", 0.75), ("Chicago Midway", "Midway", "MDW", 0.25)]),
    ("Washington", [("Washington Dulles", "Dulles", "IAD", 0.4), ("Washington Reagan National", "Reagan National", "DCA", 0.4), ("Baltimore/Washington", "Baltimore/Washington", "BWI", 0.2)]),
    ("Milan", [("Milan Malpensa", "Malpensa", "MXP", 0.7), ("Milan Linate", "Linate", "LIN", 0.3)]),
    ("Moscow", [("Moscow Sheremetyevo", "Sheremetyevo", "SVO", 0.6), ("Moscow Domodedovo", "Domodedovo", "DME", 0.4)]),
    ("Houston", [("Houston Bush Intercontinental", "Bush Intercontinental", "IAH", 0.7), ("Houston Hobby", "Hobby", "HOU", 0.3)]),
    ("Dallas", [("Dallas/Fort Worth", "Dallas/Fort Worth", "DFW", 0.75), ("Dallas Love Field", "Love Field", "DAL", 0.25)]),
    ("Rome", [("Rome Fiumicino", "Fiumicino", "FCO", 0.8), ("Rome Ciampino", "Ciampino", "CIA", 0.2)]),
    ("Istanbul", [("the new Istanbul Airport", "Istanbul Airport", "IST", 0.7), ("Istanbul Sabiha Gökçen", "Sabiha Gökçen", "SAW", 0.3)]),
    ("Portland", [("Portland, Oregon", "Portland, Oregon", "PDX", 0.65), ("Portland, Maine", "Portland, Maine", "PWM", 0.35)]),
    ("Birmingham", [("Birmingham, England", "Birmingham, England", "BHX", 0.6), ("Birmingham, Alabama", "Birmingham, Alabama", "BHM", 0.4)]),
    ("Manchester", [("Manchester, England", "Manchester, England", "MAN", 0.8), ("Manchester, New Hampshire", "Manchester, New Hampshire", "MHT", 0.2)]),
    ("Springfield", [("Springfield, Missouri", "Springfield, Missouri", "SGF", 0.55), ("Springfield, Illinois", "Springfield, Illinois", "SPI", 0.45)]),
    ("Columbia", [("Columbia, South Carolina", "Columbia, South Carolina", "CAE", 0.55), ("Columbia, Missouri", "Columbia, Missouri", "COU", 0.45)]),
    ("Sydney", [("Sydney, Australia", "Sydney, Australia", "SYD", 0.9), ("Sydney, Nova Scotia", "Sydney, Nova Scotia", "YQY", 0.1)]),
    ("Melbourne", [("Melbourne, Australia", "Melbourne, Australia", "MEL", 0.85), ("Melbourne, Florida", "Melbourne, Florida", "MLB", 0.15)]),
    ("San Jose", [("San Jose, California", "San Jose, California", "SJC", 0.6), ("San Jose, Costa Rica", "San Jose, Costa Rica", "SJO", 0.4)]),
]
CURRENCIES = [  # place, [(phrase, currency, weight)]
    ("Georgia", [("the US state of Georgia", "US dollar", 0.55), ("the country Georgia", "Georgian lari", 0.45)]),
    ("Congo", [("the Democratic Republic of the Congo", "Congolese franc", 0.6), ("the Republic of the Congo", "Central African CFA franc", 0.4)]),
    ("Korea", [("South Korea", "South Korean won", 0.7), ("North Korea", "North Korean won", 0.3)]),
    ("Sudan", [("Sudan", "Sudanese pound", 0.7), ("South Sudan", "South Sudanese pound", 0.3)]),
    ("Samoa", [("the independent state of Samoa", "Samoan tala", 0.65), ("American Samoa", "US dollar", 0.35)]),
    ("Ireland", [("the Republic of Ireland", "euro", 0.8), ("Northern Ireland", "pound sterling", 0.2)]),
    ("Guinea", [("Guinea", "Guinean franc", 0.5), ("Guinea-Bissau", "West African CFA franc", 0.2), ("Equatorial Guinea", "Central African CFA franc", 0.15), ("Papua New Guinea", "Papua New Guinean kina", 0.15)]),
    ("Dominica", [("Dominica", "East Caribbean dollar", 0.6), ("the Dominican Republic", "Dominican peso", 0.4)]),
    ("Macedonia", [("North Macedonia", "Macedonian denar", 0.7), ("the Greek region of Macedonia", "euro", 0.3)]),
    ("Cyprus", [("the Republic of Cyprus", "euro", 0.75), ("Northern Cyprus", "Turkish lira", 0.25)]),
]
DRIVING = [  # place, [(where, side, weight)]
    ("Birmingham", [("England", "left", 0.6), ("Alabama", "right", 0.4)]),
    ("Melbourne", [("Australia", "left", 0.85), ("Florida", "right", 0.15)]),
    ("Sydney", [("Australia", "left", 0.9), ("Nova Scotia", "right", 0.1)]),
    ("Kingston", [("Jamaica", "left", 0.6), ("Ontario", "right", 0.4)]),
    ("Hamilton", [("Ontario", "right", 0.45), ("New Zealand", "left", 0.35), ("Bermuda", "left", 0.2)]),
    ("Richmond", [("Virginia", "right", 0.6), ("London", "left", 0.4)]),
    ("Cambridge", [("England", "left", 0.55), ("Massachusetts", "right", 0.45)]),
    ("Dublin", [("Ireland", "left", 0.8), ("Ohio", "right", 0.2)]),
    ("Victoria", [("British Columbia", "right", 0.7), ("Seychelles", "left", 0.3)]),
    ("London", [("England", "left", 0.9), ("Ontario", "right", 0.1)]),
    ("Manchester", [("England", "left", 0.8), ("New Hampshire", "right", 0.2)]),
    ("Perth", [("Australia", "left", 0.7), ("Ontario", "right", 0.3)]),
]
# fmt: on
AIRPORT_KEYWORDS = PLACE_KEYWORDS + ("airport", "airports")


def travel() -> list[Family]:
    fams = []
    for city, readings in AIRPORTS:
        rs = [R(f, p, code, w) for f, p, code, w in readings]
        fams.append(
            F(
                "travel",
                "What is the airport code for {}?",
                city,
                f"which airport of {city}",
                AIRPORT_KEYWORDS,
                rs,
            )
        )
    for place, readings in CURRENCIES:
        rs = [R(p, p, cur, w) for p, cur, w in readings]
        fams.append(
            F("travel", "What currency is used in {}?", place, f"which {place}", PLACE_KEYWORDS, rs)
        )
    for place, readings in DRIVING:
        rs = [
            R(
                _place_name(place, w),
                _place_name(place, w),
                side,
                wt,
                (f"on the {side}", f"the {side}-hand side", f"{side}-hand side"),
            )
            for w, side, wt in readings
        ]
        fams.append(
            F(
                "travel",
                "Which side of the road do people drive on in {}?",
                place,
                f"which {place}",
                PLACE_KEYWORDS,
                rs,
            )
        )
    return fams


# ----------------------------------------------------------------------------------- history
# fmt: off
PRESIDENTS = [  # surname, [(full name, took office, left office, born, ordinal, weight)]
    ("Bush", [("George H. W. Bush", 1989, 1993, 1924, "41st", 0.4), ("George W. Bush", 2001, 2009, 1946, "43rd", 0.6)]),
    ("Roosevelt", [("Theodore Roosevelt", 1901, 1909, 1858, "26th", 0.45), ("Franklin D. Roosevelt", 1933, 1945, 1882, "32nd", 0.55)]),
    ("Adams", [("John Adams", 1797, 1801, 1735, "2nd", 0.65), ("John Quincy Adams", 1825, 1829, 1767, "6th", 0.35)]),
    ("Johnson", [("Andrew Johnson", 1865, 1869, 1808, "17th", 0.35), ("Lyndon B. Johnson", 1963, 1969, 1908, "36th", 0.65)]),
    ("Harrison", [("William Henry Harrison", 1841, 1841, 1773, "9th", 0.45), ("Benjamin Harrison", 1889, 1893, 1833, "23rd", 0.55)]),
]
MONARCHS = [
    ("When did Queen {} become queen?", "Elizabeth", [("Elizabeth I", "1558", 0.3), ("Elizabeth II", "1952", 0.7)]),
    ("When did Queen {} die?", "Elizabeth", [("Elizabeth I", "1603", 0.3), ("Elizabeth II", "2022", 0.7)]),
    ("In what year was Queen {} born?", "Elizabeth", [("Elizabeth I", "1533", 0.3), ("Elizabeth II", "1926", 0.7)]),
    ("When did King {} become king?", "Charles", [("Charles I", "1625", 0.3), ("Charles III", "2022", 0.7)]),
    ("When did King {} become king?", "George", [("George III", "1760", 0.3), ("George V", "1910", 0.35), ("George VI", "1936", 0.35)]),
    ("When did King {} become king?", "Henry", [("Henry VII", "1485", 0.4), ("Henry VIII", "1509", 0.6)]),
    ("When did the {} end?", "world war", [("First World War", "1918", 0.4), ("Second World War", "1945", 0.6)]),
    ("When did the {} start?", "world war", [("First World War", "1914", 0.4), ("Second World War", "1939", 0.6)]),
]
# fmt: on
PERSON_KEYWORDS = ("which", "who", "one", "first", "second", "name", "full")


def history() -> list[Family]:
    fams = []
    questions = [  # template, field of PRESIDENTS
        ("When did President {} take office?", 1),
        ("When did President {} leave office?", 2),
        ("In what year was President {} born?", 3),
        ("Which number president was President {}?", 4),
    ]
    for surname, people in PRESIDENTS:
        for template, field in questions:
            rs = []
            for person in people:
                answer = str(person[field])
                aliases = (answer[:-2], f"the {answer} president") if field == 4 else ()
                rs.append(R(person[0], person[0], answer, person[5], aliases))
            fams.append(
                F("history", template, surname, f"which President {surname}", PERSON_KEYWORDS, rs)
            )
    for template, generic, readings in MONARCHS:
        rs = [R(p, p, year, w) for p, year, w in readings]
        fams.append(F("history", template, generic, f"which {generic}", PERSON_KEYWORDS, rs))
    return fams


# ---------------------------------------------------------------------------------- software
# fmt: off
SOFTWARE = [  # template (slot: " in <language>"), dimension keywords, [(language, answer, weight)]
    ("How do I print a line of text{}?", [("Python", "print()", 0.35), ("JavaScript", "console.log()", 0.3), ("Java", "System.out.println()", 0.15), ("Go", "fmt.Println()", 0.1), ("Rust", "println!()", 0.1)]),
    ("How do I get the length of a string s{}?", [("Python", "len(s)", 0.35), ("JavaScript", "s.length", 0.3), ("Go", "len(s)", 0.15), ("Rust", "s.len()", 0.2)]),
    ("Which command installs a package{}?", [("Python", "pip install", 0.4), ("JavaScript", "npm install", 0.35), ("Rust", "cargo add", 0.15), ("Ruby", "gem install", 0.1)]),
    ("What is the file extension for source files{}?", [("Python", ".py", 0.35), ("JavaScript", ".js", 0.3), ("Rust", ".rs", 0.15), ("Go", ".go", 0.1), ("Ruby", ".rb", 0.1)]),
    ("Which keyword defines a function{}?", [("Python", "def", 0.4), ("JavaScript", "function", 0.3), ("Go", "func", 0.1), ("Rust", "fn", 0.1), ("Kotlin", "fun", 0.1)]),
    ("How do I convert a string s to an integer{}?", [("Python", "int(s)", 0.4), ("JavaScript", "parseInt(s)", 0.3), ("Java", "Integer.parseInt(s)", 0.2), ("Go", "strconv.Atoi(s)", 0.1)]),
    ("Which file lists a project's dependencies{}?", [("Python", "requirements.txt", 0.35), ("JavaScript", "package.json", 0.35), ("Rust", "Cargo.toml", 0.15), ("Go", "go.mod", 0.1), ("Ruby", "Gemfile", 0.05)]),
]
TOOLS = [  # template, generic, dimension, [(filler, phrase, answer, weight)]
    ("What port does the development server of {} use by default?", "my web framework", "which web framework", [
        ("Django", "Django", "8000", 0.35), ("Flask", "Flask", "5000", 0.3),
        ("Ruby on Rails", "Ruby on Rails", "3000", 0.2), ("Vite", "Vite", "5173", 0.15)]),
    ("How do I quit {} without saving?", "the editor", "which editor", [
        ("vim", "vim", ":q!", 0.45), ("nano", "nano", "Ctrl+X, then N", 0.35), ("emacs", "emacs", "Ctrl+X Ctrl+C, then N", 0.2)]),
]
CODENAMES = {  # version: [(system, codename, weight)]
    5: [("Debian", "lenny", 0.4), ("Android", "Lollipop", 0.6)],
    6: [("Debian", "squeeze", 0.4), ("Android", "Marshmallow", 0.6)],
    7: [("Debian", "wheezy", 0.4), ("Android", "Nougat", 0.6)],
    8: [("Debian", "jessie", 0.4), ("Android", "Oreo", 0.6)],
    9: [("Debian", "stretch", 0.4), ("Android", "Pie", 0.6)],
    11: [("Debian", "bullseye", 0.45), ("macOS", "Big Sur", 0.55)],
    12: [("Debian", "bookworm", 0.45), ("macOS", "Monterey", 0.55)],
    13: [("Debian", "trixie", 0.45), ("macOS", "Ventura", 0.55)],
    14: [("Debian", "forky", 0.45), ("macOS", "Sonoma", 0.55)],
    15: [("Debian", "duke", 0.45), ("macOS", "Sequoia", 0.55)],
}
LANGUAGE_KEYWORDS = ("language", "languages", "programming", "which", "kind", "stack", "using")
# fmt: on


def software() -> list[Family]:
    fams = []
    for template, readings in SOFTWARE:
        rs = [R(f" in {lang}", lang, answer, w) for lang, answer, w in readings]
        fams.append(F("software", template, "", "programming language", LANGUAGE_KEYWORDS, rs))
    for template, generic, dim, readings in TOOLS:
        rs = [R(f, p, a, w) for f, p, a, w in readings]
        fams.append(F("software", template, generic, dim, ("which", "tool", "one", "using"), rs))
    for version, readings in CODENAMES.items():
        rs = [
            R(f"{system} {version}", f"{system} {version}", name, w) for system, name, w in readings
        ]
        fams.append(
            F(
                "software",
                "What is the codename of {}?",
                f"version {version}",
                "which operating system",
                ("which", "system", "operating", "os", "software", "product", "distribution"),
                rs,
            )
        )
    return fams


# -------------------------------------------------------------------------------------- main
DOMAINS = (
    "cooking",
    "travel",
    "sports",
    "geography",
    "units",
    "software",
    "history",
    "science",
    "temperature",
    "dates",
    "data_sizes",
    "time",
    "numbers",
)


def families(rng: random.Random) -> dict[str, list[Family]]:
    builders = {
        "cooking": cooking,
        "travel": travel,
        "sports": sports,
        "geography": geography,
        "units": units,
        "software": software,
        "history": history,
        "science": science,
        "temperature": temperature,
        "dates": lambda: dates(rng),
        "data_sizes": data_sizes,
        "time": time_of_day,
        "numbers": numbers,
    }
    return {d: builders[d]() for d in DOMAINS}


def keywords(fam: Family, readings: tuple[Reading, ...], text: str) -> list[str]:
    """The family's keywords, the words of its dimension, and the words of the readings'
    phrases that the request lacks."""
    have = set(words(text))
    out = list(fam.keywords) + [
        w for w in words(fam.dimension) if w not in STOPWORDS and len(w) > 1
    ]
    for r in readings:
        out += [w for w in words(r.phrase) if w not in have and w not in STOPWORDS and len(w) > 1]
    return sorted(dict.fromkeys(w.lower() for w in out))


def record(fam: Family, filler: str, readings: tuple[Reading, ...]) -> dict:
    text = fam.template.format(filler)
    total = sum(r.weight for r in readings)
    return {
        "domain": fam.domain,
        "text": text,
        "dimension": fam.dimension,
        "keywords": keywords(fam, fam.readings, text),
        "readings": [
            {
                "phrase": r.phrase,
                "answer": r.answer,
                "aliases": list(r.aliases),
                "weight": round(r.weight / total, 4),
            }
            for r in readings
        ],
    }


def pick(rng: random.Random, items: list, n: int) -> list:
    """`n` of `items` drawn with `rng`, in their original order."""
    keep = sorted(rng.sample(range(len(items)), min(n, len(items))))
    return [items[i] for i in keep]


def make_requests(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    for domain, fams in families(rng).items():
        ambiguous = [record(f, f.generic, f.readings) for f in fams if len(f.readings) > 1]
        specific = [
            record(f, r.filler, (r,))
            for f in fams
            for r in f.readings
            if len(f.readings) == 1 or r.filler != f.generic
        ]
        ambiguous = pick(rng, ambiguous, MAX_AMBIGUOUS)
        specific = pick(rng, specific, round(UNAMBIGUOUS_RATIO * len(ambiguous)))
        seen: set[str] = set()
        kept = []
        for rec in ambiguous + specific:
            if rec["text"] not in seen:
                seen.add(rec["text"])
                kept.append(rec)
        for i, rec in enumerate(kept):
            out.append({"id": f"{domain}-{i:03d}", **rec})
    texts = [r["text"] for r in out]
    if len(set(texts)) != len(texts):
        raise ValueError("two requests of different domains have the same text")
    return out


def write_gz(path: Path, payload: dict) -> None:
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.encode("utf-8"))


def generate(out_dir: Path, seed: int = SEED) -> Path:
    requests = make_requests(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REQUESTS_FILE
    write_gz(
        path, {"generator": "envs/clarify_qa/generate_data.py", "seed": seed, "requests": requests}
    )
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=HERE)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    path = generate(args.out_dir, args.seed)
    reqs = make_requests(args.seed)
    n_amb = sum(len(r["readings"]) > 1 for r in reqs)
    print(
        f"wrote {path} ({path.stat().st_size:,} bytes): {len(reqs)} requests, {n_amb} "
        f"ambiguous, {len({r['domain'] for r in reqs})} domains"
    )


if __name__ == "__main__":
    main()
