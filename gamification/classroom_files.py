"""Files a teacher downloads: login cards (PDF) and an assignment's progress (CSV, XLSX).

Pure formatting: the callers decide who may have them.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import segno
from fpdf import FPDF
from openpyxl import Workbook

from accounts.services import PICTURE_WORDS

from .classroom_selectors import PupilProgress

# DejaVu Sans (shipped with matplotlib) draws the pictures of the password words.
PICTURE_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
# fpdf2 subsets the font with fontTools, which logs every table it prunes at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)


@dataclass(frozen=True)
class LoginCard:
    real_name: str  # the teacher's name for the pupil, so the right child gets the right card
    username: str
    password: str  # "moon-star-374"
    class_name: str
    join_url: str  # the class's join page, with the username filled in (the card's QR code)


CARD_W, CARD_H = 90, 55  # mm: 2 x 5 cards on A4
MARGIN_X, MARGIN_Y = 12, 12


def _latin1(text: str) -> str:
    """fpdf2's core fonts are Latin-1: other characters print as '?', not as an error."""
    return text.encode("latin-1", "replace").decode("latin-1")


def login_cards_pdf(cards: list[LoginCard]) -> bytes:
    """A4 pages of cut-out cards: the pupil's name (for handing out), username, password with its
    picture words, and a QR code of the join page with the pupil's username filled in."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(False)
    pdf.set_title("Login cards")
    pdf.add_font("Pictures", "", str(PICTURE_FONT))
    for i, card in enumerate(cards):
        if i % 10 == 0:
            pdf.add_page()
        col, row = i % 2, (i % 10) // 2
        x, y = MARGIN_X + col * (CARD_W + 6), MARGIN_Y + row * (CARD_H + 1)
        pdf.set_draw_color(160)
        pdf.set_dash_pattern(dash=1, gap=1)
        pdf.rect(x, y, CARD_W, CARD_H)
        pdf.set_dash_pattern()
        pdf.set_font("Helvetica", "B", 12)
        pdf.set_xy(x + 4, y + 4)
        pdf.cell(CARD_W - 34, 6, _latin1(card.real_name)[:40])
        pdf.set_font("Helvetica", "", 8)
        pdf.set_xy(x + 4, y + 10)
        pdf.cell(CARD_W - 34, 4, _latin1(card.class_name)[:50])
        pdf.set_font("Helvetica", "", 9)
        pdf.set_xy(x + 4, y + 18)
        pdf.cell(20, 6, "Username")
        pdf.set_font("Courier", "B", 13)
        pdf.cell(CARD_W - 54, 6, card.username)
        # Below the QR code: the longest password (23 characters) takes the card's width.
        pdf.set_font("Helvetica", "", 9)
        pdf.set_xy(x + 4, y + 30)
        pdf.cell(20, 6, "Password")
        pdf.set_font("Courier", "B", 12)
        pdf.cell(CARD_W - 26, 6, card.password)
        _picture_words(pdf, x + 4, y + 38, card.password)
        pdf.set_font("Helvetica", "", 7)
        pdf.set_xy(x + 4, y + CARD_H - 9)
        pdf.cell(CARD_W - 8, 4, _latin1(f"Join: {card.join_url}")[:80])
        qr = io.BytesIO()
        segno.make(card.join_url, error="m").save(qr, kind="png", scale=4, border=1)
        qr.seek(0)
        pdf.image(qr, x=x + CARD_W - 27, y=y + 3, w=24, h=24)
    if not cards:
        pdf.add_page()
    return bytes(pdf.output())


def _picture_words(pdf: FPDF, x: float, y: float, password: str) -> None:
    """Each picture word of the password as its symbol and the word in capitals, then the digits."""
    for part in password.split("-"):
        symbol = PICTURE_WORDS.get(part)
        if symbol is not None:
            pdf.set_font("Pictures", "", 16)
            pdf.set_xy(x, y)
            pdf.cell(7, 8, symbol)
            x += 7
        pdf.set_font("Helvetica", "B", 9)
        pdf.set_xy(x, y + 1)
        width = pdf.get_string_width(part.upper()) + 3
        pdf.cell(width, 6, part.upper())
        x += width


PROGRESS_HEADER = [
    "pupil",
    "pseudonym",
    "tasks_submitted",
    "target_tasks",
    "percent",
    "check_accuracy",
    "time_spent_min",
    "last_submitted_at",
    "status",
]


def _progress_rows(rows: list[PupilProgress]) -> list[list]:
    return [
        [
            row.real_name,
            row.pseudonym,
            row.tasks_submitted,
            row.target_tasks,
            row.percent,
            None if row.check_accuracy is None else round(row.check_accuracy, 3),
            round(row.time_spent_s / 60, 1),
            row.last_submitted_at.isoformat() if row.last_submitted_at else None,
            row.status,
        ]
        for row in rows
    ]


def _spreadsheet_safe(value):
    """Names typed by a teacher could start with ``=``: keep spreadsheets from running them as
    formulas (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def progress_csv(rows: list[PupilProgress]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PROGRESS_HEADER)
    for row in _progress_rows(rows):
        writer.writerow(["" if v is None else _spreadsheet_safe(v) for v in row])
    return out.getvalue().encode("utf-8")


def progress_xlsx(rows: list[PupilProgress], *, title: str) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "progress"
    sheet.append([_spreadsheet_safe(title)])
    sheet.append(PROGRESS_HEADER)
    for row in _progress_rows(rows):
        sheet.append([_spreadsheet_safe(v) for v in row])
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()
