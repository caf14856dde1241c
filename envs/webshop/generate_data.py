"""Generate the bundled WebShop-style catalog and shopping instructions (standard library only).

    python envs/webshop/generate_data.py                      # rewrite the bundled files
    python envs/webshop/generate_data.py --out-dir /tmp/ws --products 200 --instructions 100

Writes `products.json.gz` and `instructions.json.gz` (gzip with a zero timestamp, so the same
seed and sizes give the same bytes). Every product belongs to one of the product types below
(13 categories); its attributes are drawn from its type's pool, its options (color, size,
flavor...) are a subset of its type's values, and its title, description and feature bullets
mention exactly its own attributes. An instruction is drawn from one product (the goal): some of
its attributes, one value of some of its option types, and a price ceiling chosen as in WebShop
(the upper of two of the first four multiples of $10 above the goal's price), phrased as a
lower-case shopping request ending in ", and price lower than X.00 dollars".
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

SEED = 0
N_PRODUCTS = 1200
N_INSTRUCTIONS = 1000
HERE = Path(__file__).resolve().parent
PRODUCTS_FILE = "products.json.gz"
INSTRUCTIONS_FILE = "instructions.json.gz"
PRICE_RANGE = [10.0 * i for i in range(1, 100)]


@dataclass(frozen=True)
class ProductType:
    query: str
    """The search query the type stands for (WebShop's `query` field); also its id."""
    article: str
    """Article before the noun in instructions: "a", "a pair of", "" ("a"/"an" agree)."""
    noun: str
    """Noun phrase used in instructions."""
    title_noun: str
    """Noun phrase used in product titles."""
    path: str
    """Category path below the department (joined with " › ")."""
    attrs: tuple[str, ...]
    """Attribute pool; "a|b" lists mutually exclusive alternatives (a product has at most one)."""
    options: tuple[tuple[str, tuple[str, ...]], ...]
    """Option types and their values."""
    price: tuple[int, int]
    extras: tuple[str, ...] = ()
    """Optional title endings."""
    plural: bool = False


@dataclass(frozen=True)
class Category:
    name: str
    department: str
    brands: tuple[str, ...]
    blurbs: tuple[str, ...]
    types: tuple[ProductType, ...] = field(default=())


def T(query, article, noun, title_noun, path, attrs, options, price, extras=(), plural=False):
    return ProductType(
        query,
        article,
        noun,
        title_noun,
        path,
        tuple(attrs),
        tuple((k, tuple(v)) for k, v in options),
        price,
        tuple(extras),
        plural,
    )


# fmt: off
SIZES = ["x-small", "small", "medium", "large", "x-large", "xx-large"]
CATEGORIES = (
    Category("beauty", "Beauty & Personal Care",
             ("Lumora", "Velvetine", "Aurelle", "Bloomwell", "Silkora", "Pure Petal"),
             ("A salon quality formula for everyday routines.",
              "Gentle enough to use every day.",
              "Loved by beauty editors and made in small batches.")),
    Category("electronics", "Electronics",
             ("Voltix", "Sonique", "Nexcell", "Auralink", "Zentro", "Kirra"),
             ("Backed by an 18 month warranty and friendly support.",
              "Works with phones, tablets and laptops.",
              "Tested for thousands of hours before shipping.")),
    Category("womens_fashion", "Clothing, Shoes & Jewelry",
             ("Maison Lark", "Fernwood", "Ellery Rose", "Solstice", "Willa Jane", "Coralie"),
             ("A wardrobe staple that pairs with everything.",
              "Designed in our studio and sized to fit true.",
              "Perfect for work, travel and weekends.")),
    Category("mens_fashion", "Clothing, Shoes & Jewelry",
             ("Harbor & Pine", "Ridgeline", "Northwell", "Brannock", "Ironside", "Cal Tide"),
             ("Built for comfort from morning to night.",
              "A modern cut that holds its shape.",
              "Made to be worn hard and washed often.")),
    Category("grocery", "Grocery & Gourmet Food",
             ("Golden Acre", "Hearth & Harvest", "Sunmeadow", "Blue Ridge Pantry", "Orchard Lane",
              "Terra Nova"),
             ("Packed fresh in small batches.",
              "A pantry favorite for busy families.",
              "Sourced from trusted growers.")),
    Category("furniture", "Home & Kitchen",
             ("Oakhurst", "Nordlund", "Casa Verde", "Linden Home", "Stonebridge", "Elmcroft"),
             ("Ships in one box with every tool you need.",
              "A timeless design that fits any room.",
              "Sturdy construction for years of use.")),
    Category("kitchen", "Home & Kitchen",
             ("Copperleaf", "Chef Maison", "Kitchara", "Brightwell", "Ember & Oak", "Culina"),
             ("Designed by home cooks for home cooks.",
              "Makes everyday cooking simple.",
              "A thoughtful gift for any kitchen.")),
    Category("sports", "Sports & Outdoors",
             ("Summitex", "TrailForge", "Peakline", "Kinetic Pro", "Wildpath", "Apex Motion"),
             ("Built for training, travel and the great outdoors.",
              "Trusted by coaches and weekend athletes.",
              "Tough enough for daily workouts.")),
    Category("toys", "Toys & Games",
             ("Playmoor", "Brightbloom", "Tinker Town", "Wonderkin", "Jolly Fox", "Starling Kids"),
             ("Safety tested and made for years of play.",
              "Encourages imagination and problem solving.",
              "A birthday and holiday favorite.")),
    Category("pets", "Pet Supplies",
             ("Pawsome", "Happy Tails", "Furwell", "Barkley & Co", "Whisker Lane", "Petopia"),
             ("Made for pets of every size and age.",
              "Vet recommended materials.",
              "Your pet will love it or your money back.")),
    Category("home_decor", "Home & Kitchen",
             ("Hearthstone", "Maple & Moss", "Lumen House", "Driftwood Co", "Ivory Lane", "Sable"),
             ("Adds warmth and character to any room.",
              "Designed to refresh your space in minutes.",
              "A finishing touch for living rooms and bedrooms.")),
    Category("office", "Office Products",
             ("Inkwell", "Paperloft", "Desk & Co", "Scribe Lab", "Margin", "Brightdesk"),
             ("Keeps your desk organized and inspiring.",
              "Loved by students, teachers and professionals.",
              "A reliable pick for school and work.")),
    Category("health", "Health & Household",
             ("Vitalis", "Evergreen Labs", "Purely Well", "Northstar Health", "Clearday", "Nuvia"),
             ("Made in a certified facility.",
              "Part of a healthy daily routine.",
              "Third party tested for purity.")),
)

TYPES = {
    "beauty": (
        T("hair extensions", "a", "hair extension", "Hair Extensions",
          "Hair Care › Hair Extensions & Wigs",
          ["clip in", "natural looking", "heat resistant", "human hair|synthetic", "long straight|curly",
           "tangle free"],
          [("color", ["black", "dark brown", "light brown", "blonde", "auburn", "platinum"]),
           ("size", ["14 inch", "16 inch", "18 inch", "20 inch", "22 inch"])],
          (12, 70), ("for Women", "7 Pcs Set")),
        T("shampoo", "a", "shampoo", "Shampoo", "Hair Care › Shampoo & Conditioner",
          ["sulfate free", "for dry hair", "color safe", "anti dandruff", "volumizing", "paraben free"],
          [("scent", ["lavender", "coconut", "argan oil", "unscented", "rosemary mint"]),
           ("size", ["8 fl oz", "12 fl oz", "16 fl oz", "33.8 fl oz"])],
          (6, 35), ("for Women and Men", "Salon Formula")),
        T("lipstick", "a", "lipstick", "Lipstick", "Makeup › Lips › Lipstick",
          ["long lasting", "matte finish", "moisturizing", "cruelty free", "waterproof", "vegan"],
          [("color", ["ruby red", "nude pink", "berry", "coral", "mauve", "deep plum"])],
          (6, 30), ("Full Coverage Color",)),
        T("face moisturizer", "a", "face moisturizer", "Face Moisturizer",
          "Skin Care › Face › Moisturizers",
          ["oil free", "fragrance free", "for sensitive skin", "with spf 30", "hyaluronic acid",
           "anti aging", "non comedogenic"],
          [("size", ["1.7 oz", "2.5 oz", "3.4 oz"])],
          (8, 45), ("Daily Face Cream",)),
        T("nail polish", "a", "nail polish", "Nail Polish", "Makeup › Nails › Nail Polish",
          ["quick dry", "long lasting", "non toxic", "chip resistant", "gel effect", "glossy"],
          [("color", ["cherry red", "soft pink", "navy", "nude beige", "lilac", "jet black"])],
          (5, 20), ("Salon Manicure Color",)),
    ),
    "electronics": (
        T("wireless earbuds", "a pair of", "wireless earbuds", "Wireless Earbuds",
          "Headphones › Earbud Headphones",
          ["noise cancelling", "water resistant", "with charging case", "touch control",
           "long battery life", "with microphone", "bluetooth 5.3"],
          [("color", ["black", "white", "navy blue", "rose gold", "sage green"])],
          (15, 120), ("for iPhone and Android", "for Running and Workouts"), plural=True),
        T("phone case", "a", "phone case", "Phone Case", "Cell Phones & Accessories › Cases",
          ["shockproof", "slim fit", "with kickstand", "military grade", "magnetic",
           "wireless charging compatible"],
          [("size", ["iphone 14", "iphone 15", "iphone 15 pro", "galaxy s24", "pixel 8"]),
           ("color", ["black", "clear", "purple", "midnight green", "red"])],
          (8, 40), ("Protective Cover",)),
        T("usb c cable", "a", "usb c cable", "USB C Cable", "Computers & Accessories › Cables",
          ["fast charging", "braided nylon", "100w", "data transfer", "right angle", "tangle free"],
          [("size", ["3 ft", "6 ft", "10 ft"]), ("color", ["black", "white", "gray", "blue"])],
          (6, 25), ("2 Pack", "for Laptop and Phone")),
        T("bluetooth speaker", "a", "bluetooth speaker", "Bluetooth Speaker",
          "Portable Audio › Speakers",
          ["waterproof", "portable", "deep bass", "with microphone", "24 hour playtime", "outdoor",
           "stereo pairing"],
          [("color", ["black", "blue", "red", "camo green", "gray"])],
          (20, 150), ("for Home and Travel",)),
        T("power bank", "a", "power bank", "Power Bank", "Cell Phones & Accessories › Chargers",
          ["fast charging", "usb c", "compact", "with led display", "magnetic", "airline approved"],
          [("size", ["10000mah", "20000mah", "26800mah"]), ("color", ["black", "white", "blue"])],
          (15, 60), ("Portable Charger",)),
    ),
    "womens_fashion": (
        T("dress", "a", "dress", "Dress", "Women › Clothing › Dresses",
          ["short sleeve", "floral print", "v neck", "with pockets", "casual", "machine wash",
           "midi length"],
          [("color", ["black", "navy", "wine red", "dusty blue", "beige", "emerald"]),
           ("size", SIZES)],
          (18, 60), ("for Women", "Summer Sundress")),
        T("leggings", "a pair of", "leggings", "Leggings", "Women › Clothing › Active › Leggings",
          ["high waist", "tummy control", "squat proof", "moisture wicking", "with pockets",
           "buttery soft"],
          [("color", ["black", "charcoal", "navy", "olive", "burgundy"]), ("size", SIZES[1:5])],
          (12, 40), ("for Women", "Yoga Pants"), plural=True),
        T("sandals", "a pair of", "sandals", "Sandals", "Women › Shoes › Sandals",
          ["arch support", "non slip", "open toe", "memory foam", "adjustable strap", "flat"],
          [("color", ["black", "tan", "white", "rose gold", "brown"]),
           ("size", ["6", "6.5", "7", "7.5", "8", "8.5", "9", "10"])],
          (15, 70), ("for Women", "Summer Beach Shoes"), plural=True),
        T("cardigan", "a", "cardigan sweater", "Cardigan Sweater", "Women › Clothing › Sweaters",
          ["open front", "long sleeve", "chunky knit", "button down", "oversized", "lightweight"],
          [("color", ["cream", "camel", "black", "heather gray", "sage"]), ("size", SIZES[1:5])],
          (20, 55), ("for Women",)),
    ),
    "mens_fashion": (
        T("t-shirt", "a", "t-shirt", "T-Shirt", "Men › Clothing › Shirts › T-Shirts",
          ["crew neck", "moisture wicking", "cotton", "slim fit", "short sleeve", "tagless"],
          [("color", ["black", "white", "heather gray", "navy", "olive green"]), ("size", SIZES[1:])],
          (8, 30), ("for Men", "Casual Tee")),
        T("jeans", "a pair of", "jeans", "Jeans", "Men › Clothing › Jeans",
          ["straight leg", "slim fit|relaxed fit", "stretch", "five pocket", "button fly"],
          [("color", ["dark wash", "light wash", "black", "medium wash", "stone gray"]),
           ("size", ["30w x 30l", "32w x 30l", "32w x 32l", "34w x 32l", "36w x 34l"])],
          (20, 70), ("for Men", "Denim Pants"), plural=True),
        T("running shoes", "a pair of", "running shoes", "Running Shoes",
          "Men › Shoes › Athletic › Running",
          ["lightweight", "breathable", "non slip", "cushioned", "wide width", "mesh upper"],
          [("color", ["black white", "all black", "navy", "gray", "blue orange"]),
           ("size", ["8", "8.5", "9", "9.5", "10", "10.5", "11", "12"])],
          (30, 120), ("for Men", "Walking Sneakers"), plural=True),
        T("hoodie", "a", "hoodie", "Hoodie", "Men › Clothing › Hoodies & Sweatshirts",
          ["pullover|zip up", "fleece lined", "with kangaroo pocket", "heavyweight", "relaxed fit"],
          [("color", ["black", "charcoal heather", "forest green", "maroon", "sand"]),
           ("size", SIZES[1:])],
          (20, 60), ("for Men", "Hooded Sweatshirt")),
    ),
    "grocery": (
        T("coffee beans", "", "coffee beans", "Coffee Beans", "Beverages › Coffee › Whole Bean",
          ["whole bean", "medium roast|dark roast|light roast", "organic", "fair trade", "low acid",
           "single origin"],
          [("flavor", ["original", "hazelnut", "vanilla", "caramel", "mocha"]),
           ("size", ["12 oz", "2 lb", "5 lb"])],
          (9, 45), ("Arabica Coffee",), plural=True),
        T("protein bars", "", "protein bars", "Protein Bars", "Snack Foods › Bars › Protein Bars",
          ["gluten free", "high protein", "low sugar", "keto friendly", "non gmo", "plant based"],
          [("flavor", ["chocolate chip", "peanut butter", "cookies and cream", "salted caramel",
                       "birthday cake"]),
           ("size", ["pack of 6", "pack of 12", "pack of 24"])],
          (10, 40), ("Healthy Snack",), plural=True),
        T("herbal tea", "", "herbal tea", "Herbal Tea", "Beverages › Tea › Herbal",
          ["caffeine free", "organic", "individually wrapped|loose leaf", "non gmo", "kosher"],
          [("flavor", ["chamomile", "peppermint", "ginger lemon", "hibiscus", "rooibos"]),
           ("size", ["20 count", "40 count", "100 count"])],
          (5, 25), ("Tea Bags",)),
        T("mixed nuts", "", "mixed nuts", "Mixed Nuts", "Snack Foods › Nuts & Seeds",
          ["unsalted|roasted", "resealable bag", "gluten free", "high protein", "kosher", "vegan"],
          [("flavor", ["lightly salted", "honey roasted", "sea salt", "original"]),
           ("size", ["16 oz", "2 lb", "3 lb"])],
          (8, 35), ("Snack Pack",), plural=True),
    ),
    "furniture": (
        T("office chair", "an", "office chair", "Office Chair", "Furniture › Home Office › Chairs",
          ["ergonomic", "lumbar support", "adjustable height", "mesh back", "with armrests",
           "swivel", "high back"],
          [("color", ["black", "gray", "white", "blue", "pink"])],
          (60, 300), ("for Home Office", "Computer Desk Chair")),
        T("bookshelf", "a", "bookshelf", "Bookshelf", "Furniture › Living Room › Bookcases",
          ["5 tier|3 tier", "solid wood", "easy assembly", "industrial style", "space saving",
           "with doors"],
          [("color", ["walnut", "white", "black", "rustic brown", "natural oak"])],
          (40, 250), ("for Living Room", "Storage Shelves")),
        T("coffee table", "a", "coffee table", "Coffee Table", "Furniture › Living Room › Tables",
          ["lift top", "with storage shelf", "mid century", "round|rectangular", "solid wood",
           "easy assembly"],
          [("color", ["walnut", "white", "black", "gray", "natural"])],
          (50, 300), ("for Living Room",)),
        T("bed frame", "a", "bed frame", "Bed Frame", "Furniture › Bedroom › Beds & Frames",
          ["metal|wooden", "no box spring needed", "with headboard", "under bed storage",
           "noise free", "heavy duty"],
          [("size", ["twin", "full", "queen", "king"]), ("color", ["black", "white", "gray", "brown"])],
          (90, 400), ("Platform Bed",)),
    ),
    "kitchen": (
        T("chef knife", "a", "chef knife", "Chef Knife", "Kitchen & Dining › Cutlery › Chef's Knives",
          ["stainless steel|high carbon steel", "ergonomic handle", "razor sharp", "full tang",
           "with sheath", "dishwasher safe"],
          [("size", ["6 inch", "8 inch", "10 inch"]), ("color", ["black", "silver", "wood"])],
          (15, 90), ("Kitchen Knife for Cooking",)),
        T("frying pan", "a", "frying pan", "Frying Pan", "Kitchen & Dining › Cookware › Skillets",
          ["non stick", "oven safe", "induction compatible", "pfoa free", "dishwasher safe",
           "with lid"],
          [("size", ["8 inch", "10 inch", "12 inch"]), ("color", ["black", "gray", "red", "blue"])],
          (15, 70), ("Skillet",)),
        T("water bottle", "a", "water bottle", "Water Bottle", "Kitchen & Dining › Drinkware",
          ["insulated", "bpa free", "leak proof", "stainless steel", "with straw lid", "wide mouth"],
          [("size", ["18 oz", "24 oz", "32 oz", "40 oz"]),
           ("color", ["black", "white", "sage", "lavender", "ocean blue"])],
          (10, 45), ("for Sports and Travel",)),
        T("electric kettle", "an", "electric kettle", "Electric Kettle",
          "Kitchen & Dining › Small Appliances › Kettles",
          ["stainless steel|glass", "auto shut off", "boil dry protection", "cordless",
           "variable temperature"],
          [("size", ["1.0 liter", "1.7 liter"]), ("color", ["black", "silver", "white"])],
          (20, 80), ("Hot Water Boiler",)),
    ),
    "sports": (
        T("yoga mat", "a", "yoga mat", "Yoga Mat", "Exercise & Fitness › Yoga › Mats",
          ["non slip", "extra thick", "eco friendly", "with carrying strap", "lightweight",
           "sweat resistant"],
          [("color", ["purple", "black", "teal", "pink", "gray"]), ("size", ["4mm", "6mm", "10mm"])],
          (12, 60), ("for Pilates and Home Workout",)),
        T("camping tent", "a", "camping tent", "Camping Tent", "Outdoor Recreation › Camping › Tents",
          ["waterproof", "easy setup", "with rainfly", "lightweight", "double layer",
           "instant pop up"],
          [("size", ["2 person", "4 person", "6 person"]),
           ("color", ["green", "orange", "blue", "gray"])],
          (40, 250), ("for Backpacking and Hiking",)),
        T("dumbbells", "a set of", "dumbbells", "Dumbbells", "Exercise & Fitness › Strength › Weights",
          ["adjustable", "neoprene coated|rubber coated", "non slip grip", "hex shape", "with rack"],
          [("size", ["5 lb", "10 lb", "15 lb", "20 lb", "25 lb"]),
           ("color", ["black", "pink", "blue", "gray"])],
          (15, 150), ("for Home Gym",), plural=True),
        T("resistance bands", "a set of", "resistance bands", "Resistance Bands",
          "Exercise & Fitness › Strength › Bands",
          ["with handles", "latex free", "with door anchor", "heavy duty", "fabric"],
          [("size", ["light", "medium", "heavy", "extra heavy"])],
          (10, 35), ("for Working Out",), plural=True),
    ),
    "toys": (
        T("building blocks", "a set of", "building blocks", "Building Blocks",
          "Building Toys › Building Sets",
          ["stem", "compatible with major brands", "with storage box", "city theme|space theme",
           "for kids"],
          [("size", ["300 pieces", "500 pieces", "1000 pieces"])],
          (15, 80), ("Gift for Boys and Girls",), plural=True),
        T("jigsaw puzzle", "a", "jigsaw puzzle", "Jigsaw Puzzle", "Puzzles › Jigsaw Puzzles",
          ["for adults", "thick pieces", "landscape|animal", "with poster", "glare free"],
          [("size", ["500 pieces", "1000 pieces", "1500 pieces"])],
          (10, 30), ("Family Game Night",)),
        T("plush toy", "a", "plush toy", "Plush Toy", "Stuffed Animals & Plush Toys",
          ["soft", "machine washable", "for toddlers", "hypoallergenic", "weighted"],
          [("style", ["bear", "bunny", "dinosaur", "unicorn", "penguin"]),
           ("size", ["8 inch", "12 inch", "16 inch"])],
          (8, 40), ("Cuddly Stuffed Animal",)),
        T("remote control car", "a", "remote control car", "Remote Control Car",
          "Remote & App Controlled › Cars",
          ["rechargeable", "all terrain", "high speed", "waterproof", "4wd"],
          [("color", ["red", "blue", "green", "black"])],
          (25, 90), ("for Kids and Adults",)),
    ),
    "pets": (
        T("dog bed", "a", "dog bed", "Dog Bed", "Dogs › Beds & Furniture",
          ["orthopedic", "memory foam", "washable cover", "waterproof", "non skid bottom", "bolster"],
          [("size", SIZES[1:5]), ("color", ["gray", "brown", "navy", "beige"])],
          (20, 90), ("for Large Dogs", "Pet Bed")),
        T("cat litter", "", "cat litter", "Cat Litter", "Cats › Litter & Housebreaking",
          ["clumping", "unscented|lavender scented", "low dust", "odor control", "flushable"],
          [("size", ["10 lb", "20 lb", "40 lb"])],
          (8, 35), ("for Multiple Cats",)),
        T("dog leash", "a", "dog leash", "Dog Leash", "Dogs › Collars, Harnesses & Leashes",
          ["reflective", "heavy duty", "padded handle", "retractable", "hands free"],
          [("size", ["4 ft", "6 ft", "16 ft"]), ("color", ["black", "red", "blue", "orange", "pink"])],
          (8, 35), ("for Walking and Training",)),
        T("cat tree", "a", "cat tree", "Cat Tree", "Cats › Furniture › Cat Trees",
          ["multi level", "with scratching posts", "with condo", "plush perch", "sturdy base"],
          [("color", ["beige", "gray", "black", "cream"])],
          (35, 150), ("for Indoor Cats",)),
    ),
    "home_decor": (
        T("throw pillow covers", "a set of", "throw pillow covers", "Throw Pillow Covers",
          "Home Decor › Decorative Pillows",
          ["velvet|linen", "hidden zipper", "farmhouse|boho", "decorative", "double sided"],
          [("size", ["16x16 inch", "18x18 inch", "20x20 inch"]),
           ("color", ["mustard", "navy", "blush pink", "cream", "emerald"])],
          (8, 30), ("for Couch and Sofa",), plural=True),
        T("blackout curtains", "", "blackout curtains", "Blackout Curtains",
          "Home Decor › Window Treatments › Curtains",
          ["thermal insulated", "noise reducing", "grommet top", "machine washable", "for bedroom"],
          [("size", ["52x63 inch", "52x84 inch", "52x95 inch"]),
           ("color", ["navy", "gray", "beige", "black", "sage green"])],
          (15, 60), ("2 Panels",), plural=True),
        T("wall clock", "a", "wall clock", "Wall Clock", "Home Decor › Clocks",
          ["silent", "battery operated", "modern|vintage", "large", "metal frame"],
          [("color", ["black", "white", "gold", "wood"])],
          (12, 50), ("for Living Room and Kitchen",)),
        T("scented candle", "a", "scented candle", "Scented Candle", "Home Decor › Candles",
          ["soy wax", "long burning", "in glass jar", "lead free wick", "gift set"],
          [("scent", ["vanilla", "lavender", "sandalwood", "fresh linen", "cinnamon"]),
           ("size", ["8 oz", "14 oz", "22 oz"])],
          (10, 40), ("Aromatherapy Candle",)),
    ),
    "office": (
        T("notebook", "a", "notebook", "Notebook", "Paper › Notebooks & Writing Pads",
          ["college ruled|dotted|blank pages", "hardcover", "spiral bound", "100 sheets",
           "thick paper"],
          [("size", ["a5", "b5", "letter"]), ("color", ["black", "blue", "green", "pink"])],
          (5, 25), ("Journal for School and Work",)),
        T("gel pens", "", "gel pens", "Gel Pens", "Writing Instruments › Pens",
          ["quick dry", "fine point", "assorted colors", "smooth writing", "retractable",
           "refillable"],
          [("size", ["12 count", "24 count", "48 count"])],
          (6, 25), ("for Journaling and Note Taking",), plural=True),
        T("desk lamp", "a", "desk lamp", "Desk Lamp", "Office Lighting › Desk Lamps",
          ["led", "dimmable", "with usb charging port", "eye caring", "touch control",
           "adjustable arm"],
          [("color", ["black", "white", "silver", "gray"])],
          (15, 60), ("for Home Office and Reading",)),
    ),
    "health": (
        T("multivitamin", "a", "multivitamin", "Multivitamin Gummies",
          "Vitamins & Dietary Supplements › Multivitamins",
          ["gluten free", "vegan", "non gmo", "sugar free", "for adults|for kids", "extra strength"],
          [("flavor", ["mixed berry", "orange", "lemon", "strawberry"]),
           ("size", ["60 count", "90 count", "120 count"])],
          (8, 35), ("Daily Supplement",)),
        T("electric toothbrush", "an", "electric toothbrush", "Electric Toothbrush",
          "Oral Care › Toothbrushes › Electric",
          ["rechargeable", "with timer", "pressure sensor", "waterproof", "with travel case"],
          [("color", ["black", "white", "pink", "blue"])],
          (20, 90), ("for Adults",)),
    ),
}
# fmt: on

ACRONYMS = {
    "bpa": "BPA",
    "pfoa": "PFOA",
    "usb": "USB",
    "led": "LED",
    "spf": "SPF",
    "gmo": "GMO",
    "4wd": "4WD",
    "stem": "STEM",
    "c": "C",
    "100w": "100W",
}
SMALL = {"for", "with", "and", "of", "in", "to", "no"}
OPENERS = (
    "i need",
    "i am looking for",
    "i want",
    "find me",
    "i'm looking for",
    "get me",
    "i would like",
    "i want to buy",
    "looking for",
    "please find",
)
BENEFITS = (
    "made to last through daily use",
    "tested for quality and safety",
    "a customer favorite",
    "backed by a 30 day money back guarantee",
    "a great gift idea",
    "checked by hand before it ships",
)
REVIEWS = {
    5: (
        "Love this {noun}, exactly as described.",
        "Great quality for the price.",
        "Bought a second one for my sister.",
    ),
    4: (
        "Good {noun}, shipping took a while.",
        "Nice overall, the packaging was damaged.",
        "Does what it says, would buy again.",
    ),
    3: (
        "It is okay for the price.",
        "Average quality, nothing special.",
        "Looks different from the pictures.",
    ),
    2: ("Not what I expected.", "Stopped working after a month."),
    1: ("Arrived broken, returned it.",),
}
ID_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def title_case(phrase: str) -> str:
    words = phrase.split()
    out = []
    for i, w in enumerate(words):
        if w in ACRONYMS:
            out.append(ACRONYMS[w])
        elif w in SMALL and i > 0:
            out.append(w)
        else:
            out.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(out)


def mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text.lower()) is not None


def with_article(article: str, rest: str) -> str:
    if article in ("a", "an"):
        article = "an" if rest[:1] in "aeiou" else "a"
    return f"{article} {rest}" if article else rest


def price_ceiling(price: float, rng: random.Random) -> float:
    """WebShop's rule: the upper of two of the first four multiples of $10 above the price."""
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) < 2:
        return 1_000_000.0
    return max(rng.sample(above, 2))


# ---------------------------------------------------------------------------------- products
def make_product(rng: random.Random, cat: Category, ptype: ProductType, asin: str) -> dict:
    groups = [g.split("|") for g in ptype.attrs]
    n_attrs = rng.randint(2, min(4, len(groups)))
    attrs = [rng.choice(g) for g in rng.sample(groups, n_attrs)]
    brand = rng.choice(cat.brands)
    in_title = [a for a in attrs if rng.random() < 0.8] or attrs[:1]
    pre = [a for a in in_title if not a.startswith(("with ", "for "))]
    post = [a for a in in_title if a.startswith(("with ", "for "))]
    title = f"{brand} {' '.join(title_case(a) for a in pre)} {ptype.title_noun}".replace("  ", " ")
    tail = [title_case(a) for a in post]
    if ptype.extras and rng.random() < 0.6:
        tail.append(rng.choice(ptype.extras))
    if tail:
        title += ", " + ", ".join(tail)
    options = {}
    for name, values in ptype.options:
        k = rng.randint(min(2, len(values)), len(values))
        chosen = set(rng.sample(values, k))
        options[name] = [v for v in values if v in chosen]
    price = int(rng.uniform(*ptype.price)) + rng.choice((0.99, 0.49, 0.95, 0.0))
    noun = ptype.noun
    listed = attrs[0] if len(attrs) == 1 else f"{', '.join(attrs[:-1])} and {attrs[-1]}"
    description = f"Meet the {brand} {noun}. {rng.choice(cat.blurbs)} Highlights: {listed}."
    features = [f"{a.upper()}: {rng.choice(BENEFITS)}." for a in attrs]
    n_reviews = rng.randint(1, 3)
    reviews = []
    for _ in range(n_reviews):
        score = rng.choices((5, 4, 3, 2, 1), weights=(5, 4, 2, 1, 1))[0]
        reviews.append({"score": score, "body": rng.choice(REVIEWS[score]).format(noun=noun)})
    text = " ".join([title, description, *features])
    for group in groups:
        for a in group:
            if a not in attrs and mentions(text, a):
                raise ValueError(f"{ptype.query}: text of {asin} mentions {a!r}: {text!r}")
    return {
        "asin": asin,
        "title": title,
        "category": cat.name,
        "query": ptype.query,
        "product_category": f"{cat.department} › {ptype.path}",
        "price": round(price, 2),
        "description": description,
        "features": features,
        "reviews": reviews,
        "attributes": attrs,
        "options": options,
    }


def make_products(rng: random.Random, n: int) -> list[dict]:
    types = [(cat, t) for cat in CATEGORIES for t in TYPES[cat.name]]
    asins: set[str] = set()
    products = []
    for i in range(n):
        cat, ptype = types[i] if i < len(types) else rng.choice(types)
        while True:
            asin = "B0" + "".join(rng.choice(ID_CHARS) for _ in range(8))
            if asin not in asins:
                asins.add(asin)
                break
        products.append(make_product(rng, cat, ptype, asin))
    return products


# ------------------------------------------------------------------------------ instructions
def option_phrase(rng: random.Random, name: str, value: str) -> str:
    if name == "color":
        return rng.choice((f"in {value}", f"in {value} color", f"in the color {value}"))
    if name == "size":
        return rng.choice((f"in size {value}", f"size {value}", f"in {value} size"))
    return rng.choice((f"{value} {name}", f"with {name} {value}", f"in {value} {name}"))


def make_instruction(rng: random.Random, product: dict, ptype: ProductType, idx: int) -> dict:
    attrs = rng.sample(product["attributes"], rng.randint(1, min(3, len(product["attributes"]))))
    options = {}
    for name, values in product["options"].items():
        if rng.random() < 0.85:
            options[name] = rng.choice(values)
    pre = [a for a in attrs if not a.startswith(("with ", "for ")) and rng.random() < 0.6]
    clause = [a for a in attrs if a not in pre and not a.startswith(("with ", "for "))]
    post = [a for a in attrs if a.startswith(("with ", "for "))]
    text = f"{rng.choice(OPENERS)} {with_article(ptype.article, ' '.join([*pre, ptype.noun]))}"
    if post:
        text += " " + " and ".join(post)
    if clause:
        verb = "are" if ptype.plural else "is"
        text += f" {rng.choice(('that', 'which'))} {verb} {' and '.join(clause)}"
    phrases = [option_phrase(rng, k, v) for k, v in options.items()]
    if phrases:
        text += rng.choice((" ", ", ")) + " and ".join(phrases)
    ceiling = price_ceiling(product["price"], rng)
    if ceiling < 1_000_000:
        text += f", and price lower than {ceiling:.2f} dollars"
    return {
        "id": f"ins{idx:04d}",
        "asin": product["asin"],
        "text": text,
        "attributes": attrs,
        "options": options,
        "price_upper": ceiling,
    }


def make_instructions(rng: random.Random, products: list[dict], n: int) -> list[dict]:
    by_query = {t.query: t for cat in CATEGORIES for t in TYPES[cat.name]}
    out, seen = [], set()
    while len(out) < n:
        product = rng.choice(products)
        ins = make_instruction(rng, product, by_query[product["query"]], len(out))
        key = (ins["asin"], tuple(sorted(ins["attributes"])), tuple(sorted(ins["options"].items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(ins)
    return out


# -------------------------------------------------------------------------------------- main
def write_gz(path: Path, payload: dict) -> None:
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.encode("utf-8"))


def generate(
    out_dir: Path,
    n_products: int = N_PRODUCTS,
    n_instructions: int = N_INSTRUCTIONS,
    seed: int = SEED,
) -> tuple[Path, Path]:
    rng = random.Random(seed)
    products = make_products(rng, n_products)
    instructions = make_instructions(rng, products, n_instructions)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"generator": "envs/webshop/generate_data.py", "seed": seed}
    write_gz(out_dir / PRODUCTS_FILE, {**meta, "products": products})
    write_gz(out_dir / INSTRUCTIONS_FILE, {**meta, "instructions": instructions})
    return out_dir / PRODUCTS_FILE, out_dir / INSTRUCTIONS_FILE


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=HERE)
    p.add_argument("--products", type=int, default=N_PRODUCTS)
    p.add_argument("--instructions", type=int, default=N_INSTRUCTIONS)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    paths = generate(args.out_dir, args.products, args.instructions, args.seed)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
