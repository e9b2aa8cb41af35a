"""A seeded generator of generic English text for pre-training the embedded base model.

Each document is short templated everyday English: weather, food, travel, shops, work, numbers,
dialogues, lists, facts, everyday opinions, plain instructions with their answers, casing and digits
(and, on request, everyday uses of the words positive, negative and neutral). A share of the documents are generic
question-and-answer exchanges rendered with the model's chat template, so the model knows the turn
structure before any fine-tuning. No fine-tuning task's records appear here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

RenderChat = Callable[[list[dict[str, str]]], str]

NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Iris",
    "James",
    "Kenji",
    "Lena",
    "Maya",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tom",
    "Uma",
    "Victor",
    "Wei",
    "Yusuf",
    "Zoe",
    "Luis",
    "Mina",
    "Oscar",
    "Ruth",
    "Theo",
)
CITIES = (
    "Paris",
    "London",
    "Tokyo",
    "Cairo",
    "Lima",
    "Oslo",
    "Rome",
    "Berlin",
    "Madrid",
    "Seoul",
    "Delhi",
    "Nairobi",
    "Toronto",
    "Sydney",
    "Lisbon",
    "Dublin",
    "Vienna",
    "Prague",
    "Athens",
    "Boston",
    "Denver",
    "Quito",
    "Hanoi",
    "Accra",
)
FOODS = (
    "bread",
    "rice",
    "soup",
    "apples",
    "cheese",
    "pasta",
    "salad",
    "eggs",
    "fish",
    "beans",
    "oranges",
    "tea",
    "coffee",
    "milk",
    "cake",
    "noodles",
    "tomatoes",
    "carrots",
    "bananas",
    "yogurt",
    "potatoes",
    "lemons",
    "honey",
    "pears",
)
SHOPS = (
    "bakery",
    "market",
    "pharmacy",
    "bookshop",
    "grocery store",
    "hardware store",
    "post office",
    "flower shop",
    "corner shop",
    "supermarket",
)
ITEMS = (
    "a pen",
    "a notebook",
    "a lamp",
    "a chair",
    "a jacket",
    "an umbrella",
    "a map",
    "a cup",
    "a towel",
    "a battery",
    "a hammer",
    "a candle",
    "a scarf",
    "a key",
    "a bag",
    "a clock",
)
JOBS = (
    "teacher",
    "nurse",
    "driver",
    "cook",
    "farmer",
    "doctor",
    "baker",
    "pilot",
    "engineer",
    "painter",
    "writer",
    "clerk",
    "gardener",
    "mechanic",
    "librarian",
    "builder",
)
PLACES = (
    "the park",
    "the station",
    "the library",
    "the office",
    "the beach",
    "the museum",
    "the school",
    "the river",
    "the bridge",
    "the hotel",
    "the airport",
    "the garden",
)
TRANSPORT = ("bus", "train", "car", "bike", "plane", "boat", "tram", "taxi")
WEATHER = ("sunny", "cloudy", "rainy", "windy", "foggy", "snowy", "warm", "cold", "hot", "cool")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
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
)
COLORS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "gray")
ANIMALS = (
    "cat",
    "dog",
    "horse",
    "bird",
    "fish",
    "cow",
    "sheep",
    "rabbit",
    "duck",
    "goat",
    "mouse",
    "fox",
    "bear",
    "lion",
    "frog",
    "owl",
)
WORDS = (
    "house",
    "table",
    "window",
    "river",
    "garden",
    "paper",
    "music",
    "water",
    "letter",
    "friend",
    "summer",
    "winter",
    "morning",
    "evening",
    "school",
    "street",
    "mountain",
    "forest",
    "island",
    "doctor",
    "kitchen",
    "number",
    "answer",
    "question",
    "picture",
    "orange",
    "yellow",
    "simple",
)
OPPOSITES = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("open", "closed"),
    ("early", "late"),
    ("light", "dark"),
    ("old", "new"),
    ("full", "empty"),
    ("long", "short"),
    ("high", "low"),
    ("wet", "dry"),
    ("left", "right"),
    ("day", "night"),
    ("in", "out"),
)
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
FACTS = (
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
    ("How many days are in a week?", "There are 7 days in a week."),
    ("How many months are in a year?", "There are 12 months in a year."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
    ("What do bees make?", "Bees make honey."),
    ("What is ice made of?", "Ice is frozen water."),
    ("Which animal says moo?", "A cow says moo."),
    ("Where does the sun rise?", "The sun rises in the east."),
    ("Where does the sun set?", "The sun sets in the west."),
    ("How many legs does a spider have?", "A spider has 8 legs."),
    ("How many legs does a dog have?", "A dog has 4 legs."),
    ("What do plants need to grow?", "Plants need water, light and soil to grow."),
    ("What is the opposite of up?", "The opposite of up is down."),
    ("What color is grass?", "Grass is green."),
    ("What color is snow?", "Snow is white."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("Which season comes after summer?", "Autumn comes after summer."),
    ("What do you use to write on paper?", "You use a pen or a pencil."),
    ("What do fish live in?", "Fish live in water."),
    ("How many letters are in the English alphabet?", "There are 26 letters in the English alphabet."),
    ("What is the first letter of the alphabet?", "The first letter is A."),
    ("What is the last letter of the alphabet?", "The last letter is Z."),
    ("At what temperature does water freeze?", "Water freezes at 0 degrees Celsius."),
    ("At what temperature does water boil?", "Water boils at 100 degrees Celsius at sea level."),
    ("What do cows drink?", "Cows drink water."),
    ("What is a baby cat called?", "A baby cat is called a kitten."),
    ("What is a baby dog called?", "A baby dog is called a puppy."),
    ("How many wheels does a bike have?", "A bike has 2 wheels."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
)
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly.",
    "Answer the user's question.",
    "You are a friendly helper who answers in plain English.",
)


def _money(rng: random.Random) -> str:
    return f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}"


def _clock(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}:{rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50)):02d}"


def _weather(rng: random.Random) -> str:
    city, day = rng.choice(CITIES), rng.choice(DAYS)
    low = rng.randint(-5, 20)
    return rng.choice(
        (
            f"The weather in {city} on {day} will be {rng.choice(WEATHER)}. The high is {low + rng.randint(3, 12)} "
            f"degrees and the low is {low} degrees.",
            f"It was {rng.choice(WEATHER)} in {city} this morning, so {rng.choice(NAMES)} took an umbrella. "
            f"By the evening it was {rng.choice(WEATHER)}.",
            f"WEATHER REPORT\n{city}: {rng.choice(WEATHER)}, {low} C\n{rng.choice(CITIES)}: {rng.choice(WEATHER)}, "
            f"{rng.randint(-5, 30)} C",
            f"Today is {day}. It is {rng.choice(WEATHER)} and {rng.choice(WEATHER)} outside. "
            f"Tomorrow it may be {rng.choice(WEATHER)}.",
        )
    )


def _food(rng: random.Random) -> str:
    name, a, b, c = rng.choice(NAMES), *rng.sample(FOODS, 3)
    return rng.choice(
        (
            f"For breakfast {name} had {a} and {b}. For lunch there was {c}.",
            f"To make a simple meal, cook the {a} for {rng.randint(5, 30)} minutes, then add the {b} and "
            f"a little salt.",
            f"{name} likes {a} but does not like {b}. {name}'s favorite meal is {c}.",
            f"Recipe for {a} with {b}:\n1. Wash the {a}.\n2. Cut the {b}.\n3. Mix them in a bowl.\n4. Serve with {c}.",
        )
    )


def _travel(rng: random.Random) -> str:
    name, (src, dst), mode = rng.choice(NAMES), rng.sample(CITIES, 2), rng.choice(TRANSPORT)
    hour, minute = rng.randint(5, 14), rng.choice((0, 15, 30, 45))
    return rng.choice(
        (
            f"{name} traveled from {src} to {dst} by {mode}. The trip took {rng.randint(2, 14)} hours.",
            f"The {mode} to {dst} leaves at {hour}:{minute:02d} "
            f"and arrives at {hour + rng.randint(1, 9)}:{minute:02d}. "
            f"A ticket costs {_money(rng)}.",
            f"Next {rng.choice(MONTHS)}, {name} will visit {dst}. {name} wants to see {rng.choice(PLACES)} "
            f"and eat {rng.choice(FOODS)}.",
            f"Platform {rng.randint(1, 12)}: the {mode} for {dst} is {rng.randint(2, 25)} minutes late.",
        )
    )


def _shop(rng: random.Random) -> str:
    name, shop, item = rng.choice(NAMES), rng.choice(SHOPS), rng.choice(ITEMS)
    return rng.choice(
        (
            f"{name} went to the {shop} and bought {item} for {_money(rng)}.",
            f"The {shop} opens at {rng.randint(6, 10)}:00 and closes at {rng.randint(5, 9)}:30 in the evening. "
            f"It is closed on {rng.choice(DAYS)}.",
            f"Shopping list:\n- {rng.randint(2, 9)} {rng.choice(FOODS)}\n- {item}\n- {rng.choice(FOODS)}",
            f'"How much is {item}?" asked {name}. "It is {_money(rng)}," said the clerk.',
            f"item\tprice\n{item.split(' ', 1)[1]}\t{_money(rng)}\n{rng.choice(FOODS)}\t{_money(rng)}",
        )
    )


def _work(rng: random.Random) -> str:
    name, job, place = rng.choice(NAMES), rng.choice(JOBS), rng.choice(PLACES)
    return rng.choice(
        (
            f"{name} is a {job}. {name} works near {place} from {rng.choice(DAYS)} to {rng.choice(DAYS)}.",
            f"The meeting starts at {_clock(rng)} in room {rng.randint(100, 999)}. Please bring {rng.choice(ITEMS)}.",
            f"Every morning the {job} takes the {rng.choice(TRANSPORT)} to work. The ride takes "
            f"{rng.randint(5, 60)} minutes.",
            f"To do on {rng.choice(DAYS)}:\n1. Call {rng.choice(NAMES)}.\n2. Go to {place}.\n"
            f"3. Buy {rng.choice(ITEMS)}.",
        )
    )


def _numbers(rng: random.Random) -> str:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    x, y, w = rng.randint(2, 9), rng.randint(2, 9), rng.randint(0, 11)
    start = rng.randint(0, 90)
    return rng.choice(
        (
            f"{a} plus {b} is {a + b}. {max(a, b)} minus {min(a, b)} is {max(a, b) - min(a, b)}.",
            f"Count from {start} to {start + 5}: " + ", ".join(str(n) for n in range(start, start + 6)) + ".",
            f"The number {a} is {'even' if a % 2 == 0 else 'odd'}. "
            f"The number {b} is {'even' if b % 2 == 0 else 'odd'}.",
            f"{max(a, b)} is bigger than {min(a, b)}." if a != b else f"{a} is equal to {b}.",
            f"In {rng.randint(1900, 2030)}, the town had {rng.randint(1000, 99999)} people.",
            f"{x} times {y} is {x * y}.",
            f"The number {NUMBER_WORDS[w]} is written as {w}, and {w + 1} is written as {NUMBER_WORDS[w + 1]}.",
        )
    )


def _dialogue(rng: random.Random) -> str:
    first, second = rng.sample(NAMES, 2)
    return rng.choice(
        (
            f"{first}: Good morning, {second}. How are you?\n{second}: I am fine, thank you. And you?\n"
            f"{first}: Very well. It is {rng.choice(WEATHER)} today.",
            f"{first}: Where are you going?\n{second}: I am going to {rng.choice(PLACES)}.\n"
            f"{first}: By {rng.choice(TRANSPORT)}?\n{second}: Yes.",
            f"{first}: What time is it?\n{second}: It is {_clock(rng)}.\n{first}: Thanks!",
            f"{first}: Do you want {rng.choice(FOODS)} or {rng.choice(FOODS)}?\n{second}: Both, please.",
        )
    )


def _casing(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    return rng.choice(
        (
            f"The word {word} in capital letters is {word.upper()}.",
            f"{word.upper()} in lower case is {word}.",
            f"NOTICE: THE {rng.choice(PLACES)[4:].upper()} IS CLOSED ON {rng.choice(DAYS).upper()}.",
            f"Title: {word.title()} and {rng.choice(WORDS).title()}",
            f"The word {word} starts with the letter {word[0]} and has {len(word)} letters.",
            f"Spell {word}: {'-'.join(word)}.",
        )
    )


def _fact(rng: random.Random) -> str:
    question, answer = rng.choice(FACTS)
    return rng.choice(
        (f"{question} {answer}", f"Q: {question}\nA: {answer}", f"Question: {question}\nAnswer: {answer}")
    )


def _instruction(rng: random.Random) -> tuple[str, str]:
    """A plain instruction or question and its answer, used both as text and as a chat exchange."""
    word, day, month = rng.choice(WORDS), rng.randrange(7), rng.randrange(12)
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    pair = rng.choice(OPPOSITES)
    picks = rng.sample(ANIMALS, 3)
    numbers = rng.sample(range(100), 4)
    return rng.choice(
        (
            (f"Write the word {word} in capital letters.", word.upper()),
            (f"Write {word.upper()} in lower case.", word),
            (f"What is {a} plus {b}?", str(a + b)),
            (f"Which number is bigger, {a} or {b}?", str(max(a, b))),
            (f"What day comes after {DAYS[day]}?", DAYS[(day + 1) % 7]),
            (f"What month comes after {MONTHS[month]}?", MONTHS[(month + 1) % 12]),
            (f"What is the opposite of {pair[0]}?", pair[1]),
            ("Name three animals.", ", ".join(picks)),
            (f"Repeat the word {word}.", word),
            (f"Sort these numbers: {', '.join(map(str, numbers))}.", ", ".join(map(str, sorted(numbers)))),
            (f"What is the first letter of {word}?", word[0]),
            (f"How many letters are in the word {word}?", str(len(word))),
            (f"Is {a} even or odd?", "even" if a % 2 == 0 else "odd"),
            (f"What color is a {rng.choice(('ripe banana', 'lemon'))}?", "yellow"),
            (f"Write the number {NUMBER_WORDS[a % 13]} as a digit.", str(a % 13)),
            rng.choice(FACTS),
        )
    )


SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ren",
    "dor",
    "sa",
    "vel",
    "tin",
    "bra",
    "mo",
    "lu",
    "fen",
    "gar",
    "ti",
    "son",
    "ria",
    "pel",
    "dun",
    "ko",
    "mar",
    "zi",
    "hal",
    "ne",
    "bo",
    "quin",
    "ast",
    "el",
    "wy",
    "th",
    "ox",
)


def _made_up(rng: random.Random, capital: bool = False) -> str:
    word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
    return word.title() if capital else word


def _recall(rng: random.Random) -> tuple[str, str]:
    """A passage and a question answered by copying from it, over made-up words that cannot be memorised.

    This is what teaches a small model to look things up in its context (induction), the skill every
    extraction-style fine-tune builds on; it shares no words or templates with the tasks.
    """
    people = [_made_up(rng, True) for _ in range(3)]
    names = [_made_up(rng, True) for _ in range(3)]
    places = [_made_up(rng, True) for _ in range(3)]
    words = [_made_up(rng) for _ in range(rng.randint(3, 5))]
    pets = rng.sample(ANIMALS, 3)
    i = rng.randrange(3)
    homes = " ".join(f"{p} lives in {q}." for p, q in zip(people, places))
    pets_text = " ".join(f"{p} has a {a} called {n}." for p, a, n in zip(people, pets, names))
    return rng.choice(
        (
            (f"{homes}\nWhere does {people[i]} live?", places[i]),
            (f"{pets_text}\nWhat is the name of {people[i]}'s {pets[i]}?", names[i]),
            (f"{pets_text}\nWho has a {pets[i]}?", people[i]),
            (f"The code word is {words[0]}. What is the code word?", words[0]),
            (f"Repeat these words: {' '.join(words)}", " ".join(words)),
            (f"Words: {', '.join(words)}. What is the last word?", words[-1]),
            (f"Write {words[0]} in capital letters.", words[0].upper()),
            (f"Put these in reverse order: {' '.join(words)}", " ".join(reversed(words))),
        )
    )


def _plain_recall(rng: random.Random) -> str:
    prompt, answer = _recall(rng)
    return rng.choice((f"{prompt}\n{answer}", f"Question: {prompt}\nAnswer: {answer}"))


def _plain_instruction(rng: random.Random) -> str:
    prompt, answer = _instruction(rng)
    return rng.choice(
        (f"Instruction: {prompt}\nResponse: {answer}", f"{prompt}\n{answer}", f"Task: {prompt}\nAnswer: {answer}")
    )


OPINION_WORDS = {
    "favourable": (
        "good",
        "great",
        "nice",
        "wonderful",
        "excellent",
        "lovely",
        "fantastic",
        "brilliant",
        "perfect",
        "superb",
        "pleasant",
        "delightful",
    ),
    "unfavourable": (
        "bad",
        "awful",
        "terrible",
        "horrible",
        "poor",
        "dreadful",
        "disappointing",
        "boring",
        "useless",
        "unpleasant",
        "miserable",
        "annoying",
    ),
    "middling": (
        "okay",
        "fine",
        "average",
        "ordinary",
        "so-so",
        "acceptable",
        "standard",
        "adequate",
        "unremarkable",
        "plain",
        "mediocre",
        "fair",
    ),
}
OPINION_TOPICS = (
    "the film",
    "the book",
    "the concert",
    "the trip",
    "the weekend",
    "the match",
    "the museum",
    "the party",
    "the lecture",
    "the hike",
    "the play",
    "the festival",
    "the new song",
    "the game",
    "the class",
    "the holiday",
)
OPINION_OUTCOMES = {
    "favourable": (
        "{name} wants to go again.",
        "{name} told every friend about it.",
        "{name} smiled all evening.",
        "{name} would happily do it again.",
        "{name} was glad to be there.",
    ),
    "unfavourable": (
        "{name} will never go again.",
        "{name} complained about it all evening.",
        "{name} left early.",
        "{name} wished to have stayed at home.",
        "{name} was upset about it.",
    ),
    "middling": (
        "{name} had no strong feelings about it.",
        "{name} neither loved it nor hated it.",
        "{name} may or may not go again.",
        "{name} forgot about it the next day.",
        "{name} did not mind it.",
    ),
}


def _opinion(rng: random.Random) -> str:
    """Everyday opinions whose follow-up depends on the judging word, some with a contrast or a negation.

    A real base model knows which words are favourable. Without such text, a fine-tune of the embedded base on a
    few hundred labelled sentences had to discover it together with the labels, which happened at a step that
    varied with the seed and the thread count (accuracy 0.34-0.56 across three seeds and one or two threads, same
    recipe). The judging words overlap the classification task's adjectives, as any English text's would; its
    subjects (products, restaurants, services), templates and label words do not appear here."""
    kind = rng.choice(tuple(OPINION_WORDS))
    name, topic = rng.choice(NAMES), rng.choice(OPINION_TOPICS)
    word = rng.choice(OPINION_WORDS[kind])
    outcome = rng.choice(OPINION_OUTCOMES[kind]).format(name=name)
    other = rng.choice([k for k in OPINION_WORDS if k != kind])
    pattern = rng.randrange(5)
    if pattern == 0:
        return f"{name} thought {topic} was {word}. {outcome}"
    if pattern == 1:
        return f"{topic[0].upper()}{topic[1:]} on {rng.choice(DAYS)} was {word}. {outcome}"
    if pattern == 2:
        return (
            f"{name} had heard that {topic} was {rng.choice(OPINION_WORDS[other])}, yet it turned out {word}. {outcome}"
        )
    if pattern == 3:
        return f'"How was {topic}?" asked {rng.choice(NAMES)}. "{word.capitalize()}," said {name}. {outcome}'
    if kind == "unfavourable":
        return f"{topic[0].upper()}{topic[1:]} was not {rng.choice(OPINION_WORDS['favourable'])} at all. {outcome}"
    return f"{name} found {topic} {word}. {outcome}"


def _polarity(rng: random.Random) -> str:
    """Everyday uses of "positive", "negative" and "neutral" (signs of numbers, test results, colours, moods).

    A real base model knows these words. The default corpus never uses them, so the embedded base has no
    trained embedding to answer a sentiment label with, and a method that cannot retrain the output side
    (P-tuning) cannot produce one at all. No review text or task template appears here."""
    size = rng.randint(1, 90)
    value = rng.choice((1, -1)) * size
    sign = "positive" if value > 0 else "negative"
    thing, color, name = rng.choice(WORDS), rng.choice(("gray", "beige", "white", "brown")), rng.choice(NAMES)
    return rng.choice(
        (
            f"The number {value} is {sign}.",
            f"Is {value} positive or negative?\n{sign}",
            f"{color.title()} is a neutral color.",
            f"{name} stayed neutral in the argument about the {thing}.",
            f"The test result was {rng.choice(('positive', 'negative'))}.",
            f"{name} gave a {rng.choice(('positive', 'negative', 'neutral'))} answer about the {thing}.",
            f"The mood in the {thing} room was {rng.choice(('positive', 'negative', 'neutral'))}.",
            f"A {rng.choice(('positive', 'negative', 'neutral'))} word: {rng.choice(('good', 'bad', 'fine'))}.",
        )
    )


TEXT_KINDS = (
    _weather,
    _food,
    _travel,
    _shop,
    _work,
    _numbers,
    _dialogue,
    _casing,
    _fact,
    _plain_instruction,
    _plain_recall,
    _plain_recall,
    _plain_recall,
)


def _chat(rng: random.Random, render_chat: RenderChat) -> str:
    messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.4 else []
    for _ in range(rng.choice((1, 1, 2))):
        prompt, answer = _recall(rng) if rng.random() < 0.5 else _instruction(rng)
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return render_chat(messages)


def generate_corpus(
    documents: int,
    seed: int,
    render_chat: RenderChat,
    chat_share: float = 0.25,
    polarity_words: bool = False,
    opinions: bool = True,
) -> list[str]:
    """Return ``documents`` short generic documents, deterministic for ``seed``.

    ``render_chat`` turns a message list into text with the model's chat template; about
    ``chat_share`` of the documents are such chat exchanges, the rest plain text of one to three
    templated paragraphs; ``opinions`` adds ``_opinion`` and ``polarity_words`` ``_polarity`` to the kinds of
    paragraph.
    """
    rng = random.Random(seed)
    kinds = TEXT_KINDS + ((_opinion,) if opinions else ()) + ((_polarity,) if polarity_words else ())
    corpus = []
    for _ in range(documents):
        if rng.random() < chat_share:
            corpus.append(_chat(rng, render_chat))
        else:
            corpus.append("\n\n".join(rng.choice(kinds)(rng) for _ in range(rng.randint(1, 3))))
    return corpus
