"""Person names in free text without cue words: a known given name followed by a surname.

"Spoke with Maria Garcia", "Laut Katharina Schulz …", "Ik heb Sanne de Vries gebeld": no "Dear", no
"Name:". Without a language model (the connector Lambda has no third-party packages and downloads
nothing), the strongest offline signal is a given name from a list of common ones in the languages the
factory's data is written in, followed by one or two capitalised words (the surname, with the particles
``van``/``de``/``von``/``da``… allowed between). Everything else is a rule that removes look-alikes:

* the surname must not be a word that makes the phrase a place, an organisation or a product
  (``Victoria Station``, ``Georgia Tech``, ``Jordan Valley``, ``Florence … Hospital``);
* a given name that is also a common word (``Grace``, ``Rose``, ``Victoria``…) gets a lower confidence,
  and a phrase that ends in a capitalised stop word (``The Grace Period``) is never a name.

A given name alone ("Thanks Marco") is not enough here: that is the cue-word detector's job. Names
outside the list ("Bartholomew Quill") are missed; Amazon Comprehend (the connector's ``comprehend``
option) is the way to find those. Stdlib only; one regular expression pass over the text, then set
look-ups, so it costs little next to the structured detectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Common given names (first names) by language, lower-cased, accents kept (and also matched without).
_GIVEN = """
aaron abigail adam adrian ahmed aidan aisha alan albert alejandro alex alexander alexandra alice alicia
amanda amelia amir amy andrew angela anna anne anthony arjun arthur ashley barbara ben benjamin beth
brandon brian bruce carl carlos caroline catherine charles charlie charlotte chloe chris christina
christine christopher claire daniel david deborah dennis diana donald dorothy douglas dylan edward
eleanor elizabeth ella emily emma eric ethan eva evelyn fatima frank gabriel gary george grace gregory
hannah harry heather helen henry hiroshi isaac isabella maria mario max miriam ruth sam jack jacob james jane
janet jason jeffrey
jennifer jessica joan john jonathan joseph joshua julia justin karen katherine kathleen kelly kenneth
kevin kimberly laura lauren leo liam linda lisa logan lucas lucy mark mary matthew megan melissa
michael michelle mohammed muhammad nancy natalie nathan nicholas nicole noah oliver olivia oscar patrick
paul peter priya rachel rahul rebecca richard robert ronald rose ryan samantha samuel sandra sarah scott
sharon sophia sophie stephanie stephen steven susan thomas timothy tom tyler victoria william zoe zoë
jürgen juergen hans klaus wolfgang stefan andreas michael thomas markus matthias sebastian tobias lukas
jonas felix maximilian leon paul finn niklas jan tim moritz florian philipp katharina julia lena laura
sarah anna lea leonie hannah johanna sophie marie mia emilia clara greta ursula ingrid birgit sabine
petra monika renate heike andrea claudia susanne gabriele karin helga dieter uwe jörg joerg frank
bernd ralf horst günter guenter manfred heinz werner gerhard helmut rainer
camille élodie elodie julien mathieu nicolas pierre jean jacques françois francois louis antoine
hugo théo theo léa lea manon chloé inès ines louise jeanne marguerite amélie amelie céline celine
sylvie nathalie isabelle sandrine aurélie aurelie émilie emilie margaux océane oceane benoît benoit
thierry olivier sébastien sebastien guillaume romain vincent yves alain michel philippe bernard
javier lucía lucia carmen josé jose juan luis miguel pablo alejandro diego sergio raúl raul
antonio manuel francisco jesús jesus david daniel carlos jorge alberto fernando álvaro alvaro
marta elena isabel pilar dolores rosa cristina paula sofía sofia valentina camila mateo santiago
giulia alessandro francesco lorenzo matteo andrea marco luca giuseppe giovanni roberto stefano
paolo chiara francesca sara valentina martina alessia federica elisa silvia anna simona
joão joao pedro tiago rui nuno miguel ana beatriz inês mariana catarina rita leonor gonçalo goncalo
sanne pieter jeroen bram thijs daan sem lotte femke anouk eva fleur joris wouter maarten
katarzyna tomasz piotr krzysztof andrzej marek paweł pawel michał michal agnieszka małgorzata
malgorzata magdalena joanna aleksandra zofia
erik lars anders johan karl nils sven björn bjorn olof astrid ingrid karin linnea elsa maja freja
mehmet mustafa ahmet ayşe ayse fatma emine elif zeynep murat emre burak
hiroshi takashi kenji yuki haruto sakura yui aiko
wei li ming jun mei xin hao jie lei yan
arjun aditya rohan vikram sanjay anil suresh priya ananya kavya deepika neha pooja
olga irina natalia ivan dmitri sergei alexei mikhail
amina kwame kofi chinedu ngozi oluwaseun
siobhán siobhan niamh aoife seán sean ciarán ciaran
"""
# Chinese names are written surname first ("Chen Wei"): the common surnames lead the phrase the same way.
_LEADING_SURNAMES = "wang zhang liu chen yang huang zhao zhou xu sun zhu guo lin luo"
GIVEN_NAMES: frozenset[str] = _words(_GIVEN) | _words(_LEADING_SURNAMES)

# Given names that are also common words, months or places: a name only before a real surname.
_AMBIGUOUS = _words(
    "will may june april august grace rose victoria georgia jordan paris florence mark bill sky summer"
    " joy faith hope virginia carolina santa jean"
)

# Words after a given name that make the phrase a place, an organisation or a thing, not a person.
_NOT_SURNAMES = _words(
    """
    street st road rd avenue ave boulevard lane square station line valley river lake mountain park
    bridge airport hospital clinic university college school institute tech technologies bank
    group inc ltd llc gmbh ag sa corp company co foundation church cathedral hotel museum center
    centre hall tower building office mall market city county state island islands bay beach
    period pay studio code settings panel notes release version cloud services web
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december
    the and of for to in on at by with from is was are
    """
)

# Surname particles written in lower case between the given name and the surname.
_PARTICLES = r"(?:van|von|de|der|den|ter|ten|da|das|do|dos|del|della|di|du|le|la|bin|ibn|al|ní|ni|nic|mac|ó)"
_UPPER = "A-ZÀ-ÖØ-ÞĀ-ŽŁŚŻŹĆŃ"
_LOWER = "a-zß-öø-ÿā-žłśżźćńı"
# A capitalised word: a capital, then the rest (kept apart for the candidate pattern below).
_CAP_REST = rf"(?:[{_LOWER}]+(?:['\u2019-][{_UPPER}{_LOWER}][{_LOWER}]+)?|['\u2019][{_UPPER}][{_LOWER}]+)"
_CAP_WORD = rf"[{_UPPER}]{_CAP_REST}"
# Given name, then up to two particles and one or two capitalised surname words. The pattern starts
# with the capital letter and checks the character before it after that (``(?<!X.)`` one character
# in is ``(?<!X)`` at the start): a pattern whose first item is a character class lets the regex
# engine skip ahead to the next capital in C, where a leading look-behind is tried at every position.
_CANDIDATE = re.compile(
    rf"([{_UPPER}](?<![{_UPPER}{_LOWER}\w].){_CAP_REST})"
    rf"((?:[ ]{_PARTICLES})*(?:[ ]{_CAP_WORD}){{1,2}})"
    rf"(?![{_UPPER}{_LOWER}\w])"
)
_FOLD = str.maketrans("àáâäãåçèéêëìíîïñòóôöõùúûüýÿ", "aaaaaaceeeeiiiinooooouuuuyy")


def _given(word: str) -> bool:
    lower = word.lower()
    return lower in GIVEN_NAMES or lower.translate(_FOLD) in GIVEN_NAMES


def free_text_names(text: str) -> Iterator[tuple[int, int, float]]:
    """``(start, end, confidence)`` of every "Given Surname" phrase in ``text`` (see the module doc)."""
    pos = 0
    while True:
        m = _CANDIDATE.search(text, pos)
        if m is None:
            return
        given = m.group(1)
        start = m.start(1)
        # Rejected or not, the next search starts at the next word: "Laut Katharina Schulz" is first
        # seen as a phrase led by "Laut", and the name inside it must still be found.
        pos = start + len(given) + 1
        if not _given(given):
            continue
        rest = m.group(2).split(" ")[1:]
        words: list[str] = []
        for word in rest:
            if word.lower() in _NOT_SURNAMES:
                break
            words.append(word)
        # A following capitalised stop word ("Victoria Station", "… Hospital") makes it a place.
        if len(words) < len(rest) and rest[len(words)][:1].isupper():
            continue
        while words and not words[-1][:1].isupper():
            words.pop()  # a trailing particle belongs to no one
        if not words:
            continue
        confidence = 0.4 if given.lower() in _AMBIGUOUS else 0.5
        end = start + len(given) + sum(1 + len(w) for w in words)
        pos = end
        yield start, end, confidence
