"""A strict look at a FITS file's headers before astropy reads it: END cards, BITPIX, declared sizes.

astropy tolerates damaged headers by scanning on (a header without END reads data as cards
and prints a warning per card) and trusts NAXISn over the file's size. These checks walk the
headers block by block (FITS standard 4.0, sections 3-4) and stop at the first problem, so a
hostile file costs a few reads, never a scan of its data.
"""

from __future__ import annotations

import os
from pathlib import Path

from zpeft.data.checks import Problem

BLOCK = 2880
CARD = 80
BITPIX_VALUES = (8, 16, 32, 64, -32, -64)
MAX_HEADER_BLOCKS = 1000  # 36,000 cards: far beyond any real cutout header


def header_problems(path: str | Path) -> list[Problem]:
    """Problems of the headers of every HDU of a FITS file ([] when they are sound); compressed files are skipped."""
    path = Path(path)
    file = str(path)
    if path.name.lower().endswith((".gz", ".fz")):
        return []  # astropy decompresses these; their sizes are not the file's
    size = os.path.getsize(path)
    offset, index = 0, 0
    with open(path, "rb") as f:
        while offset < size:
            cards, problem = _read_header(f, offset, size, index, file)
            if problem:
                return [problem]
            bitpix, naxes, extra = _structure(cards)
            where = f"HDU {index} header"
            if bitpix not in BITPIX_VALUES:
                return [Problem(file, where, f"BITPIX = {bitpix} is not a FITS value ({', '.join(map(str, BITPIX_VALUES))})")]
            if any(n is None or n < 0 for n in naxes):
                return [Problem(file, where, f"NAXISn values {naxes} are missing or negative")]
            count = 1
            for n in naxes:
                count *= n
            data = (abs(bitpix) // 8) * extra[1] * (extra[0] + (count if naxes else 0))
            header_end = f.tell()
            padded = -(-data // BLOCK) * BLOCK
            if header_end + data > size:
                shape = " x ".join(map(str, reversed(naxes)))
                return [Problem(file, where, f"declares {shape} data ({data:,} bytes) but the file holds only "
                                             f"{size - header_end:,} bytes after this header (truncated, or NAXISn "
                                             "inflated)")]
            offset = header_end + padded
            index += 1
    return []


def _read_header(f, offset: int, size: int, index: int, file: str) -> tuple[list[str], Problem | None]:
    f.seek(offset)
    cards = []
    for _ in range(MAX_HEADER_BLOCKS):
        block = f.read(BLOCK)
        if len(block) < BLOCK:
            return cards, Problem(file, f"HDU {index} header", f"has no END card before the end of the file "
                                                               f"(header starting at byte {offset:,})")
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError:
            return cards, Problem(file, f"HDU {index} header", f"has non-ASCII bytes before its END card (header "
                                                               f"starting at byte {offset:,}): a missing END card?")
        for i in range(0, BLOCK, CARD):
            card = text[i:i + CARD]
            if card.rstrip() == "END":
                return cards, None
            cards.append(card)
    return cards, Problem(file, f"HDU {index} header", f"has no END card in {MAX_HEADER_BLOCKS} blocks")


def _structure(cards: list[str]) -> tuple[int | None, list[int | None], tuple[int, int]]:
    """BITPIX, [NAXIS1..NAXISn] and (PCOUNT, GCOUNT) of a header's cards (None where unreadable)."""
    values = {}
    for card in cards:
        if card[8:10] == "= ":
            values[card[:8].strip()] = card[10:].split("/", 1)[0].strip()

    def integer(key: str, default: int | None = None) -> int | None:
        try:
            return int(values[key])
        except (KeyError, ValueError):
            return default

    naxis = integer("NAXIS", 0) or 0
    return integer("BITPIX"), [integer(f"NAXIS{i}") for i in range(1, naxis + 1)], (integer("PCOUNT", 0),
                                                                                      integer("GCOUNT", 1))
