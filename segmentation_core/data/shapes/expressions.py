"""Referring expressions for the ``shapes`` scenes, and a checker that proves them unique.

Grammar of every sentence the generator writes (and the only one :func:`parse` accepts)::

    sentence := "the" [SUPERLATIVE] body [RELATION "the" body | PLACE]
    body     := [SIZE] [COLOR] (SHAPE | "object")

e.g. "the large red circle", "the square left of the blue star", "the leftmost triangle",
"the yellow star in the water".

The checker evaluates a parsed sentence against the scene's object attributes with
three-valued geometry: a relation is true, false, or "ambiguous" when the positions are too
close to call. A sentence singles out its target only if the target surely matches and every
other object surely does not; any ambiguity rejects the sentence.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .categories import SIZE_BINS, STUFF_NAMES, THING_COLORS, THING_NAMES

SUPERLATIVES = ("leftmost", "rightmost", "topmost", "bottommost")
RELATIONS = ("left of", "right of", "above", "below")
PLACES = {"grass": "on the grass", "water": "in the water", "sky": "in the sky",
          "wall": "in front of the wall"}
# A thing is "in"/"on" a stuff region when that much of its footprint lies there, and surely
# not when at most the lower fraction does.
_PLACE_TRUE, _PLACE_FALSE = 0.9, 0.1


@dataclass(frozen=True)
class SceneObject:
    """What the checker knows about a thing: attributes, centre, radius, stuff fractions."""

    obj_id: int
    shape: str
    color: str
    size: str
    cx: float
    cy: float
    radius: float
    stuff_fractions: Dict[str, float]

    @classmethod
    def from_dict(cls, d: dict) -> "SceneObject":
        return cls(d["ann_id"], d["shape"], d["color"], d["size"], d["cx"], d["cy"],
                   d["radius"], dict(d["stuff_fractions"]))


@dataclass(frozen=True)
class Body:
    """``[size] [color] (shape | object)``."""

    shape: Optional[str] = None
    color: Optional[str] = None
    size: Optional[str] = None

    def text(self) -> str:
        return " ".join(w for w in (self.size, self.color, self.shape or "object") if w)

    def matches(self, o: SceneObject) -> bool:
        return ((self.shape is None or o.shape == self.shape)
                and (self.color is None or o.color == self.color)
                and (self.size is None or o.size == self.size))


@dataclass(frozen=True)
class Expression:
    body: Body
    superlative: Optional[str] = None
    relation: Optional[str] = None
    landmark: Optional[Body] = None
    place: Optional[str] = None

    @property
    def kind(self) -> str:
        if self.superlative:
            return "superlative"
        if self.relation:
            return "relation"
        if self.place:
            return "place"
        return "attribute"

    def text(self) -> str:
        words = ["the"] + ([self.superlative] if self.superlative else []) + [self.body.text()]
        if self.relation:
            words += [self.relation, "the", self.landmark.text()]
        if self.place:
            words.append(PLACES[self.place])
        return " ".join(words)


# ------------------------------------------------------------------------------------ parse
def _parse_body(words: List[str], i: int) -> Tuple[Body, int]:
    size = color = None
    if i < len(words) and words[i] in SIZE_BINS:
        size, i = words[i], i + 1
    if i < len(words) and words[i] in THING_COLORS:
        color, i = words[i], i + 1
    if i >= len(words) or (words[i] not in THING_NAMES and words[i] != "object"):
        raise ValueError(f"expected a shape or 'object' at word {i} of {' '.join(words)!r}")
    shape = None if words[i] == "object" else words[i]
    return Body(shape, color, size), i + 1


def parse(sentence: str) -> Expression:
    """Parse a sentence of the grammar above; ValueError for anything else."""
    words = sentence.strip().split()
    if not words or words[0] != "the":
        raise ValueError(f"sentence must start with 'the': {sentence!r}")
    i, superlative = 1, None
    if i < len(words) and words[i] in SUPERLATIVES:
        superlative, i = words[i], i + 1
    body, i = _parse_body(words, i)
    rest = " ".join(words[i:])
    if not rest:
        return Expression(body, superlative=superlative)
    for place, phrase in PLACES.items():
        if rest == phrase:
            return Expression(body, superlative=superlative, place=place)
    for rel in RELATIONS:
        if rest.startswith(rel + " the "):
            rel_words = rel.split()
            landmark, j = _parse_body(words, i + len(rel_words) + 1)
            if j != len(words):
                raise ValueError(f"trailing words in {sentence!r}")
            return Expression(body, superlative=superlative, relation=rel, landmark=landmark)
    raise ValueError(f"cannot parse {rest!r} in {sentence!r}")


# --------------------------------------------------------------------------------- evaluate
def _margin(a: SceneObject, b: SceneObject) -> float:
    return max(3.0, 0.5 * (a.radius + b.radius))


def _relation(o: SceneObject, land: SceneObject, relation: str) -> Optional[bool]:
    """True / False / None (too close to call) for ``o <relation> land``."""
    if o.obj_id == land.obj_id:
        return False
    d = {"left of": land.cx - o.cx, "right of": o.cx - land.cx,
         "above": land.cy - o.cy, "below": o.cy - land.cy}[relation]
    m = _margin(o, land)
    if d >= m:
        return True
    if d <= 0.25 * m:
        return False
    return None


def _place(o: SceneObject, place: str) -> Optional[bool]:
    f = o.stuff_fractions.get(place, 0.0)
    if f >= _PLACE_TRUE:
        return True
    if f <= _PLACE_FALSE:
        return False
    return None


def _coordinate(o: SceneObject, superlative: str) -> float:
    """Smaller is 'more' superlative."""
    return {"leftmost": o.cx, "rightmost": -o.cx, "topmost": o.cy, "bottommost": -o.cy}[superlative]


def resolve(expr: Expression, objects: Sequence[SceneObject]) -> Tuple[Set[int], Set[int]]:
    """(sure, possible) ids of the objects the expression may denote; sure is a subset."""
    cands = [o for o in objects if expr.body.matches(o)]
    if expr.relation:
        landmarks = [o for o in objects if expr.landmark.matches(o)]
        if len(landmarks) != 1:  # the landmark itself must be unique
            return set(), {o.obj_id for o in cands}
        values = [(o, _relation(o, landmarks[0], expr.relation)) for o in cands]
    elif expr.place:
        values = [(o, _place(o, expr.place)) for o in cands]
    else:
        values = [(o, True) for o in cands]
    if expr.superlative:
        pool = [o for o, v in values if v is not False]
        if any(v is None for _, v in values) or not pool:
            return set(), {o.obj_id for o in pool}
        best = min(pool, key=lambda o: _coordinate(o, expr.superlative))
        close = {o.obj_id for o in pool if o is best or
                 _coordinate(o, expr.superlative) - _coordinate(best, expr.superlative)
                 < _margin(o, best)}
        return ({best.obj_id} if close == {best.obj_id} else set()), close
    sure = {o.obj_id for o, v in values if v is True}
    possible = {o.obj_id for o, v in values if v is not False}
    return sure, possible


def referent(sentence: str, objects: Sequence[SceneObject]) -> Optional[int]:
    """The id of the one object the sentence certainly denotes, or None if it is ambiguous,
    denotes nothing, or more than one object."""
    sure, possible = resolve(parse(sentence), objects)
    if len(sure) == 1 and sure == possible:
        return next(iter(sure))
    return None


# --------------------------------------------------------------------------------- generate
def _bodies(o: SceneObject) -> List[Body]:
    out = []
    for shape in (o.shape, None):
        for color in (None, o.color):
            for size in (None, o.size):
                if shape or color or size:
                    out.append(Body(shape, color, size))
    return out


def _unique(expr: Expression, target: SceneObject, objects: Sequence[SceneObject]) -> bool:
    sure, possible = resolve(expr, objects)
    return sure == possible == {target.obj_id}


def candidate_expressions(target: SceneObject, objects: Sequence[SceneObject]) -> Dict[str, List[Expression]]:
    """Every generated expression that singles out ``target``, grouped by kind."""
    out: Dict[str, List[Expression]] = {"attribute": [], "place": [], "relation": [], "superlative": []}
    for body in _bodies(target):
        e = Expression(body)
        if _unique(e, target, objects):
            out["attribute"].append(e)
    short = [Body(target.shape), Body(target.shape, target.color), Body(None, target.color)]
    for body in short:
        for place in STUFF_NAMES:
            e = Expression(body, place=place)
            if _unique(e, target, objects) and not _unique(Expression(body), target, objects):
                out["place"].append(e)
        if sum(body.matches(o) for o in objects) >= 2:
            for sup in SUPERLATIVES:
                e = Expression(body, superlative=sup)
                if _unique(e, target, objects):
                    out["superlative"].append(e)
    for land in objects:
        if land.obj_id == target.obj_id:
            continue
        land_bodies = [b for b in _bodies(land) if _unique(Expression(b), land, objects)]
        if not land_bodies:
            continue
        land_body = min(land_bodies, key=lambda b: len(b.text()))
        for body in short[:2]:
            for rel in RELATIONS:
                e = Expression(body, relation=rel, landmark=land_body)
                if _unique(e, target, objects):
                    out["relation"].append(e)
    return out


def choose_sentences(target: SceneObject, objects: Sequence[SceneObject],
                     rng: np.random.Generator, max_sentences: int = 3) -> List[str]:
    """Up to ``max_sentences`` distinct unique sentences of different kinds, the shortest
    attribute description first when there is one."""
    cands = candidate_expressions(target, objects)
    chosen: List[str] = []
    if cands["attribute"]:
        chosen.append(min(cands["attribute"], key=lambda e: (len(e.text()), e.text())).text())
    kinds = [k for k in ("place", "relation", "superlative", "attribute") if cands[k]]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    for _ in range(2):  # two passes: one sentence per kind first, then any kind
        for k in kinds:
            if len(chosen) >= max_sentences:
                return chosen
            pool = [e.text() for e in cands[k] if e.text() not in chosen]
            if pool:
                chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen
