"""Word lists shared by the task generators: small and regular, so a tiny model can learn them."""

import random

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo",
    "Maya", "Noah", "Olivia", "Paul", "Rosa", "Sam", "Tara", "Victor", "Wendy", "Adam", "Beth", "Carl",
    "Diana", "Eric", "Fiona", "George", "Hannah", "Ivan", "Julia", "Kevin", "Lucy", "Mark", "Nina",
    "Oscar", "Peter", "Ruth", "Simon", "Tom",
)
LAST_NAMES = (
    "Berg", "Carter", "Dale", "Ellis", "Ford", "Gray", "Hale", "Irwin", "Jones", "Klein", "Lane",
    "Moss", "Nash", "Owen", "Price", "Reed", "Stone", "Turner", "Vance", "Walsh", "Young", "Bell",
    "Cole", "Dunn", "Fox", "Grant", "Hart", "Kent", "Lowe", "Marsh",
)
TOWNS = (
    "Ashford", "Brookvale", "Cedarton", "Dunmore", "Elmwood", "Fairview", "Glenwood", "Harlow",
    "Ivybridge", "Kingsley", "Lakeside", "Millbrook", "Northam", "Oakridge", "Pinewood", "Riverton",
    "Stonehill", "Thornbury", "Westfield", "Willowdale", "Bramley", "Clifton", "Easton", "Foxley",
)
ORG_STEMS = (
    "Brightway", "Bluestone", "Northgate", "Silverline", "Greenfield", "Redwood", "Goldcrest", "Summit",
    "Harbor", "Maplewood", "Ironbridge", "Clearwater",
)
ORG_KINDS = ("Foods", "Motors", "Labs", "Systems", "Textiles", "Energy", "Books", "Logistics", "Tools", "Robotics")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown")
ANIMALS = ("dog", "cat", "rabbit", "parrot", "horse", "goat", "hamster", "turtle")
PET_NAMES = (
    "Rex", "Bella", "Max", "Luna", "Charlie", "Daisy", "Milo", "Rosie", "Buster", "Coco", "Ziggy",
    "Pepper", "Biscuit", "Shadow", "Sunny", "Toby",
)
JOBS = (
    "baker", "teacher", "nurse", "pilot", "farmer", "painter", "driver", "dentist", "chef", "lawyer",
    "plumber", "tailor", "banker", "doctor", "singer", "writer", "gardener", "carpenter", "librarian",
    "mechanic",
)
FOODS = (
    "apple pie", "pasta", "rice", "soup", "pancakes", "fish", "salad", "noodles", "cheese", "bread",
    "tomato soup", "chicken curry", "fruit salad", "pizza",
)
INSTRUMENTS = ("piano", "guitar", "violin", "drums", "flute", "trumpet", "cello", "harp")
SIMPLE_WORDS = (
    "red", "blue", "green", "small", "big", "old", "new", "happy", "quiet", "fast", "slow", "warm",
    "cold", "bright", "dark", "soft", "cat", "dog", "bird", "fish", "tree", "house", "car", "book",
    "river", "hill", "road", "garden", "apple", "bread", "table", "chair", "window", "door", "lamp",
    "cup", "boat", "train", "cloud", "rain", "sun", "moon", "star", "city", "park", "school", "song",
    "ball", "hat", "shoe", "box", "key", "runs", "jumps", "sings", "sleeps", "reads", "walks", "swims",
    "flies",
)
ANTONYMS = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "old": "new",
    "tall": "short", "open": "closed", "early": "late", "rich": "poor", "strong": "weak", "hard": "soft",
    "up": "down", "wet": "dry", "full": "empty", "loud": "quiet", "clean": "dirty", "first": "last",
    "good": "bad", "high": "low", "thick": "thin", "near": "far", "heavy": "light", "young": "old",
    "win": "lose", "buy": "sell", "push": "pull", "day": "night", "left": "right", "inside": "outside",
    "begin": "end", "true": "false", "love": "hate", "give": "take", "long": "short", "wide": "narrow",
    "sweet": "sour", "cheap": "expensive", "safe": "dangerous", "easy": "difficult",
}
PLURALS = {
    "cat": "cats", "dog": "dogs", "book": "books", "tree": "trees", "car": "cars", "house": "houses",
    "apple": "apples", "river": "rivers", "song": "songs", "chair": "chairs", "box": "boxes",
    "bus": "buses", "dish": "dishes", "church": "churches", "glass": "glasses", "city": "cities",
    "baby": "babies", "party": "parties", "story": "stories", "lady": "ladies", "leaf": "leaves",
    "knife": "knives", "wolf": "wolves", "shelf": "shelves", "child": "children", "man": "men",
    "woman": "women", "mouse": "mice", "tooth": "teeth", "foot": "feet", "goose": "geese",
    "person": "people", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "key": "keys",
    "toy": "toys", "day": "days", "fox": "foxes", "wish": "wishes",
}


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def org_name(rng: random.Random) -> str:
    return f"{rng.choice(ORG_STEMS)} {rng.choice(ORG_KINDS)}"
